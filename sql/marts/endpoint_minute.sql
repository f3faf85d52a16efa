-- The endpoint aggregate: per minute, the sum over every series of the endpoint (the system profile or base
-- model itself plus its application profiles). Percentiles of an endpoint are taken over these per-minute
-- sums.
-- Grain: one row per region x endpoint x ts (minute start, naive UTC) in which any series of the endpoint had
-- a datapoint.

with usage as (
    select * from usage_minute
),

summed as (
    select
        region,
        endpoint,
        ts,
        any_value(account_id) as account_id,
        -- Summed as decimals: the spread shares of coarse buckets and the latency products are fractions, and
        -- a double sum's last bit depends on the order the rows arrive in; a decimal sum does not.
        sum(cast(input_tokens as decimal(38, 18))) as input_tokens,
        sum(cast(output_tokens as decimal(38, 18))) as output_tokens,
        sum(cast(cache_read_tokens as decimal(38, 18))) as cache_read_tokens,
        sum(cast(cache_write_tokens as decimal(38, 18))) as cache_write_tokens,
        sum(cast(invocations as decimal(38, 18))) as invocations,
        sum(cast(throttles as decimal(38, 18))) as throttles,
        sum(cast(client_errors as decimal(38, 18))) as client_errors,
        sum(cast(server_errors as decimal(38, 18))) as server_errors,
        sum(cast(latency_ms * latency_samples as decimal(38, 18))) as latency_weighted,
        sum(cast(latency_samples as decimal(38, 18))) as latency_samples,
        sum(cast(ttft_ms * ttft_samples as decimal(38, 18))) as ttft_weighted,
        sum(cast(ttft_samples as decimal(38, 18))) as ttft_samples,
        sum(cast(tpm as decimal(38, 18))) as tpm,
        sum(cast(rpm as decimal(38, 18))) as rpm,
        sum(cast(quota_tpm_computed as decimal(38, 18))) as quota_tpm_computed,
        sum(cast(estimated_tpm_quota_usage as decimal(38, 18))) as estimated_tpm_quota_usage,
        sum(cast(quota_tpm as decimal(38, 18))) as quota_tpm,
        count(*) as series_count,
        max(resolution_s) as resolution_s
    from usage
    group by region, endpoint, ts
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
    cast(
        cast(latency_weighted as double) / nullif(cast(latency_samples as double), 0) as double
    ) as latency_ms,
    cast(latency_samples as double) as latency_samples,
    cast(cast(ttft_weighted as double) / nullif(cast(ttft_samples as double), 0) as double) as ttft_ms,
    cast(ttft_samples as double) as ttft_samples,
    cast(tpm as double) as tpm,
    cast(rpm as double) as rpm,
    cast(quota_tpm_computed as double) as quota_tpm_computed,
    cast(estimated_tpm_quota_usage as double) as estimated_tpm_quota_usage,
    cast(quota_tpm as double) as quota_tpm,
    cast(series_count as integer) as series_count,
    cast(resolution_s as integer) as resolution_s
from summed
