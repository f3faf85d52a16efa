-- Who called each endpoint, per minute: the invocation-log counts mapped to the CloudWatch series and
-- endpoint the metrics use.
-- Grain: one row per region x ts x model_id (as the caller sent it) x identity_arn x request_metadata.
--
-- A caller names a model or profile by its id or its ARN. An ARN is matched to the endpoints' profile ARNs,
-- else read as its last path part (a foundation-model ARN ends in the model id, a profile ARN in the profile
-- id, which is the series id); an id is the series id itself. tokens = input + output (as tpm); quota_tokens
-- counts cache writes and output at the model's burndown rates in force that minute (model_burndown), as
-- usage_minute's quota_tpm_computed does.

with callers as (
    select * from stg_caller_minutes
),

by_arn as (
    select
        region,
        profile_arn,
        any_value(series_id) as series_id
    from endpoints
    where profile_arn is not null
    group by region, profile_arn
),

mapped as (
    select
        callers.*,
        coalesce(
            by_arn.series_id,
            case when callers.model_id like 'arn:%' then regexp_extract(callers.model_id, '[^/]+$') end,
            callers.model_id
        ) as series_id
    from callers
    left join by_arn
        on
            callers.region = by_arn.region
            and callers.model_id = by_arn.profile_arn
),

with_endpoint as (
    select
        mapped.*,
        coalesce(endpoints.endpoint, mapped.series_id) as endpoint,
        endpoints.base_model_id
    from mapped
    left join endpoints
        on
            mapped.region = endpoints.region
            and mapped.series_id = endpoints.series_id
),

rated as (
    select
        with_endpoint.*,
        coalesce(rates.output_multiplier, 1) as output_multiplier,
        coalesce(rates.cache_write_multiplier, 1) as cache_write_multiplier
    from with_endpoint
    left join model_burndown as rates
        on
            with_endpoint.region = rates.region
            and with_endpoint.base_model_id = rates.base_model_id
            and (rates.valid_from is null or with_endpoint.ts >= rates.valid_from)
            and (rates.valid_to is null or with_endpoint.ts < rates.valid_to)
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast(series_id as varchar) as series_id,
    cast(ts as timestamp) as ts,
    cast(model_id as varchar) as model_id,
    cast(identity_arn as varchar) as identity_arn,
    cast(principal as varchar) as principal,
    cast(session_name as varchar) as session_name,
    cast(request_metadata as varchar) as request_metadata,
    cast(requests as bigint) as requests,
    cast(throttles as bigint) as throttles,
    cast(errors as bigint) as errors,
    cast(input_tokens as bigint) as input_tokens,
    cast(output_tokens as bigint) as output_tokens,
    cast(cache_read_tokens as bigint) as cache_read_tokens,
    cast(cache_write_tokens as bigint) as cache_write_tokens,
    cast(input_tokens + output_tokens as bigint) as tokens,
    cast(
        input_tokens
        + cache_write_tokens * cache_write_multiplier
        + output_tokens * output_multiplier as double
    ) as quota_tokens
from rated
