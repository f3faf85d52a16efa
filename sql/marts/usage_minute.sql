-- What each series did in each minute: tokens, requests, errors, latency, and the tokens its traffic burned
-- from the endpoint's tokens-per-minute quota.
-- Grain: one row per region x series_id x ts (minute start, naive UTC) with at least one datapoint; a minute
-- without a row was idle (inside the covered ranges of stg_metric_coverage) or never read (outside them).
--
-- Rows with resolution_s = 60 are CloudWatch's 1-minute datapoints, as they are: the only rows any statistic
-- over minutes (percentiles, averages, maxima, active or throttled minutes) reads. Where only a coarse bucket
-- was read (usage_bucket: 5-minute or 1-hour data), its minutes are also listed here, each with an even share
-- of the bucket (value / 5; latency averages unchanged) and resolution_s = 300 (or 3600), so that a chart can
-- draw one line through both periods. Those shares are not measurements: the bucket's activity may all have
-- fallen in one of its minutes. Read usage_bucket for coarse data.

with one_minute as (
    select *
    from stg_metric_points
    where period_s = 60
),

series as (
    select
        region,
        series_id,
        endpoint,
        base_model_id
    from endpoints
),

measured as (
    select
        one_minute.region,
        one_minute.account_id,
        one_minute.series_id,
        coalesce(series.endpoint, one_minute.series_id) as endpoint,
        one_minute.ts,
        coalesce(one_minute.input_tokens, 0) as input_tokens,
        coalesce(one_minute.output_tokens, 0) as output_tokens,
        coalesce(one_minute.cache_read_tokens, 0) as cache_read_tokens,
        coalesce(one_minute.cache_write_tokens, 0) as cache_write_tokens,
        coalesce(one_minute.invocations, 0) as invocations,
        coalesce(one_minute.throttles, 0) as throttles,
        coalesce(one_minute.client_errors, 0) as client_errors,
        coalesce(one_minute.server_errors, 0) as server_errors,
        one_minute.latency_avg_ms as latency_ms,
        -- CloudWatch's SampleCount is the weight of an average; invocations stand in when it was not
        -- fetched.
        case
            when one_minute.latency_avg_ms is not null
                then coalesce(one_minute.latency_samples, one_minute.invocations)
        end as latency_samples,
        one_minute.ttft_avg_ms as ttft_ms,
        case
            when one_minute.ttft_avg_ms is not null
                then coalesce(one_minute.ttft_samples, one_minute.invocations)
        end as ttft_samples,
        one_minute.estimated_tpm_quota_usage,
        coalesce(rates.output_multiplier, 1) as output_multiplier,
        coalesce(rates.cache_write_multiplier, 1) as cache_write_multiplier
    from one_minute
    left join series
        on
            one_minute.region = series.region
            and one_minute.series_id = series.series_id
    left join model_burndown as rates
        on
            series.region = rates.region
            and series.base_model_id = rates.base_model_id
            and (rates.valid_from is null or one_minute.ts >= rates.valid_from)
            and (rates.valid_to is null or one_minute.ts < rates.valid_to)
),

minutes as (
    select
        region,
        account_id,
        series_id,
        endpoint,
        ts,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        invocations,
        throttles,
        client_errors,
        server_errors,
        latency_ms,
        latency_samples,
        ttft_ms,
        ttft_samples,
        input_tokens + output_tokens as tpm,
        input_tokens
        + cache_write_tokens * cache_write_multiplier
        + output_tokens * output_multiplier as quota_tpm_computed,
        estimated_tpm_quota_usage,
        output_multiplier,
        60 as resolution_s
    from measured
    union all
    -- A coarse bucket's even share per minute, for charts only (see the header).
    select
        buckets.region,
        buckets.account_id,
        buckets.series_id,
        buckets.endpoint,
        buckets.ts + to_minutes(buckets.minute_offset) as ts,
        buckets.input_tokens / buckets.bucket_minutes as input_tokens,
        buckets.output_tokens / buckets.bucket_minutes as output_tokens,
        buckets.cache_read_tokens / buckets.bucket_minutes as cache_read_tokens,
        buckets.cache_write_tokens / buckets.bucket_minutes as cache_write_tokens,
        buckets.invocations / buckets.bucket_minutes as invocations,
        buckets.throttles / buckets.bucket_minutes as throttles,
        buckets.client_errors / buckets.bucket_minutes as client_errors,
        buckets.server_errors / buckets.bucket_minutes as server_errors,
        buckets.latency_ms,
        buckets.latency_samples / buckets.bucket_minutes as latency_samples,
        buckets.ttft_ms,
        buckets.ttft_samples / buckets.bucket_minutes as ttft_samples,
        buckets.tokens / buckets.bucket_minutes as tpm,
        buckets.quota_tokens_computed / buckets.bucket_minutes as quota_tpm_computed,
        buckets.estimated_tpm_quota_usage / buckets.bucket_minutes as estimated_tpm_quota_usage,
        buckets.output_multiplier,
        buckets.resolution_s
    from (
        select
            *,
            unnest(range(cast(bucket_minutes as bigint))) as minute_offset
        from usage_bucket
    ) as buckets
)

select
    cast(region as varchar) as region,
    cast(account_id as varchar) as account_id,
    cast(series_id as varchar) as series_id,
    cast(endpoint as varchar) as endpoint,
    cast(ts as timestamp) as ts,
    cast(input_tokens as double) as input_tokens,
    cast(output_tokens as double) as output_tokens,
    cast(cache_read_tokens as double) as cache_read_tokens,
    cast(cache_write_tokens as double) as cache_write_tokens,
    cast(invocations as double) as invocations,
    cast(throttles as double) as throttles,
    cast(client_errors as double) as client_errors,
    cast(server_errors as double) as server_errors,
    cast(latency_ms as double) as latency_ms,
    cast(latency_samples as double) as latency_samples,
    cast(ttft_ms as double) as ttft_ms,
    cast(ttft_samples as double) as ttft_samples,
    cast(tpm as double) as tpm,
    cast(invocations as double) as rpm,
    cast(quota_tpm_computed as double) as quota_tpm_computed,
    cast(estimated_tpm_quota_usage as double) as estimated_tpm_quota_usage,
    cast(coalesce(estimated_tpm_quota_usage, quota_tpm_computed) as double) as quota_tpm,
    cast(output_multiplier as double) as output_multiplier,
    cast(resolution_s as integer) as resolution_s
from minutes
