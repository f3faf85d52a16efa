-- The endpoint aggregate: per minute, the sum over every series of the endpoint (the system profile or base
-- model itself plus its application profiles). Percentiles of an endpoint are taken over these per-minute
-- sums.
-- Grain: one row per region x endpoint x ts (minute start, naive UTC) in which any series of the endpoint had
-- a datapoint.
--
-- Rows with resolution_s = 60 sum the series' 1-minute datapoints; the minutes of a coarse bucket (listed
-- for charts, as in usage_minute) hold the endpoint's bucket sum divided evenly. Sums are exact and
-- independent of the order rows arrive in: 1-minute counts are whole numbers, the latency products are summed
-- as decimals, and a bucket's shares are divided once from its integer sums.

with one_minute as (
    select
        region,
        endpoint,
        ts,
        any_value(account_id) as account_id,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(invocations) as invocations,
        sum(throttles) as throttles,
        sum(client_errors) as client_errors,
        sum(server_errors) as server_errors,
        sum(cast(latency_ms * latency_samples as decimal(18, 3))) as latency_weighted,
        sum(latency_samples) as latency_samples,
        sum(cast(ttft_ms * ttft_samples as decimal(18, 3))) as ttft_weighted,
        sum(ttft_samples) as ttft_samples,
        sum(tpm) as tpm,
        sum(rpm) as rpm,
        sum(cast(quota_tpm_computed as decimal(18, 3))) as quota_tpm_computed,
        sum(cast(estimated_tpm_quota_usage as decimal(18, 3))) as estimated_tpm_quota_usage,
        sum(cast(quota_tpm as decimal(18, 3))) as quota_tpm,
        count(*) as series_count,
        60 as resolution_s
    from usage_minute
    where resolution_s = 60
    group by region, endpoint, ts
),

buckets as (
    select
        region,
        endpoint,
        ts,
        resolution_s,
        any_value(bucket_minutes) as bucket_minutes,
        any_value(account_id) as account_id,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(invocations) as invocations,
        sum(throttles) as throttles,
        sum(client_errors) as client_errors,
        sum(server_errors) as server_errors,
        sum(cast(latency_ms * latency_samples as decimal(18, 3))) as latency_weighted,
        sum(latency_samples) as latency_samples,
        sum(cast(ttft_ms * ttft_samples as decimal(18, 3))) as ttft_weighted,
        sum(ttft_samples) as ttft_samples,
        sum(tokens) as tpm,
        sum(invocations) as rpm,
        sum(cast(quota_tokens_computed as decimal(18, 3))) as quota_tpm_computed,
        sum(cast(estimated_tpm_quota_usage as decimal(18, 3))) as estimated_tpm_quota_usage,
        sum(cast(quota_tokens as decimal(18, 3))) as quota_tpm,
        count(*) as series_count
    from usage_bucket
    group by region, endpoint, ts, resolution_s
),

spread as (
    select
        region,
        endpoint,
        ts + to_minutes(minute_offset) as ts,
        account_id,
        input_tokens / bucket_minutes as input_tokens,
        output_tokens / bucket_minutes as output_tokens,
        cache_read_tokens / bucket_minutes as cache_read_tokens,
        cache_write_tokens / bucket_minutes as cache_write_tokens,
        invocations / bucket_minutes as invocations,
        throttles / bucket_minutes as throttles,
        client_errors / bucket_minutes as client_errors,
        server_errors / bucket_minutes as server_errors,
        latency_weighted / bucket_minutes as latency_weighted,
        latency_samples / bucket_minutes as latency_samples,
        ttft_weighted / bucket_minutes as ttft_weighted,
        ttft_samples / bucket_minutes as ttft_samples,
        tpm / bucket_minutes as tpm,
        rpm / bucket_minutes as rpm,
        quota_tpm_computed / bucket_minutes as quota_tpm_computed,
        estimated_tpm_quota_usage / bucket_minutes as estimated_tpm_quota_usage,
        quota_tpm / bucket_minutes as quota_tpm,
        series_count,
        resolution_s
    from (
        select
            *,
            unnest(range(cast(bucket_minutes as bigint))) as minute_offset
        from buckets
    ) as expanded
),

-- A bucket minute in which a series also has a 1-minute datapoint (only possible where the region has no
-- 1-minute coverage) keeps the 1-minute row: no minute of the aggregate appears twice.
spread_kept as (
    select spread.*
    from spread
    anti join one_minute
        on
            spread.region = one_minute.region
            and spread.endpoint = one_minute.endpoint
            and spread.ts = one_minute.ts
),

-- Both parts have the same columns in the same order; the union takes the wider type of each (double).
summed as (
    select * from one_minute
    union all by name
    select * from spread_kept
)

select
    cast(region as varchar) as region,
    cast(account_id as varchar) as account_id,
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
    -- Weighted by SampleCount: the latency of the endpoint's requests that minute, not an average of
    -- averages.
    cast(latency_weighted / nullif(latency_samples, 0) as double) as latency_ms,
    cast(latency_samples as double) as latency_samples,
    cast(ttft_weighted / nullif(ttft_samples, 0) as double) as ttft_ms,
    cast(ttft_samples as double) as ttft_samples,
    cast(tpm as double) as tpm,
    cast(rpm as double) as rpm,
    cast(quota_tpm_computed as double) as quota_tpm_computed,
    cast(estimated_tpm_quota_usage as double) as estimated_tpm_quota_usage,
    cast(quota_tpm as double) as quota_tpm,
    cast(series_count as integer) as series_count,
    cast(resolution_s as integer) as resolution_s
from summed
