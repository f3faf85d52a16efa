-- Invocation-log caller counts, one row per caller group and minute.
-- Grain: one row per region x ts x model_id (as the caller sent it) x identity_arn x request_metadata.
--
-- The lake keeps one row per group and source (the S3 object, or Logs Insights); a minute delivered in two
-- objects has two rows, summed here.

with source as (
    select * from raw_caller_minutes
),

renamed as (
    select
        cast(region as varchar) as region,
        cast(account_id as varchar) as account_id,
        cast(ts as timestamp) as ts,
        cast(model_id as varchar) as model_id,
        cast(identity_arn as varchar) as identity_arn,
        cast(principal as varchar) as principal,
        cast(session as varchar) as session_name,
        cast(request_metadata as varchar) as request_metadata,
        cast(requests as bigint) as requests,
        cast(throttles as bigint) as throttles,
        cast(errors as bigint) as errors,
        cast(input_tokens as bigint) as input_tokens,
        cast(output_tokens as bigint) as output_tokens,
        cast(cache_read_tokens as bigint) as cache_read_tokens,
        cast(cache_write_tokens as bigint) as cache_write_tokens
    from source
)

select
    region,
    any_value(account_id) as account_id,
    ts,
    model_id,
    identity_arn,
    any_value(principal) as principal,
    any_value(session_name) as session_name,
    request_metadata,
    cast(sum(requests) as bigint) as requests,
    cast(sum(throttles) as bigint) as throttles,
    cast(sum(errors) as bigint) as errors,
    cast(sum(input_tokens) as bigint) as input_tokens,
    cast(sum(output_tokens) as bigint) as output_tokens,
    cast(sum(cache_read_tokens) as bigint) as cache_read_tokens,
    cast(sum(cache_write_tokens) as bigint) as cache_write_tokens
from renamed
group by region, ts, model_id, identity_arn, request_metadata
