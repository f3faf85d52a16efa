-- CloudWatch datapoints of the AWS/Bedrock namespace, de-duplicated, with one column per (metric, statistic).
-- Grain: one row per region x series_id x period_s x ts (bucket start, naive UTC).
--
-- A datapoint may be fetched more than once (a day is re-read while it fills up); for every
-- (region, series, metric, statistic, period, ts) the value with the latest fetched_at wins. Naming each
-- (metric, statistic) pair as a column happens in the same aggregation as the de-duplication because this is
-- the largest table of the warehouse (about nine raw rows per series-minute): one hash aggregation instead of
-- two.

with source as (
    select * from raw_metric_points
),

measured as (
    select
        region,
        account_id,
        model_id as series_id,
        period_s,
        ts,
        value,
        fetched_at,
        -- A small integer per (metric, statistic): comparing it is much cheaper than comparing two strings
        -- in each of the thirteen filtered aggregates below.
        case
            when stat = 'Sum' and metric = 'Invocations' then 1
            when stat = 'Sum' and metric = 'InputTokenCount' then 2
            when stat = 'Sum' and metric = 'OutputTokenCount' then 3
            when stat = 'Sum' and metric = 'CacheReadInputTokenCount' then 4
            when stat = 'Sum' and metric = 'CacheWriteInputTokenCount' then 5
            when stat = 'Sum' and metric = 'InvocationThrottles' then 6
            when stat = 'Sum' and metric = 'InvocationClientErrors' then 7
            when stat = 'Sum' and metric = 'InvocationServerErrors' then 8
            when stat = 'Sum' and metric = 'EstimatedTPMQuotaUsage' then 9
            when stat = 'Average' and metric = 'InvocationLatency' then 10
            when stat = 'SampleCount' and metric = 'InvocationLatency' then 11
            when stat = 'Average' and metric = 'TimeToFirstToken' then 12
            when stat = 'SampleCount' and metric = 'TimeToFirstToken' then 13
        end as measure
    from source
),

latest as (
    select
        region,
        -- A lake holds one account: its partitions are region x day, so a second account would replace the
        -- first's files. The account is therefore not part of the key (a narrower key is a cheaper hash).
        any_value(account_id) as account_id,
        series_id,
        period_s,
        ts,
        arg_max(value, fetched_at) filter (where measure = 1) as invocations,
        arg_max(value, fetched_at) filter (where measure = 2) as input_tokens,
        arg_max(value, fetched_at) filter (where measure = 3) as output_tokens,
        arg_max(value, fetched_at) filter (where measure = 4) as cache_read_tokens,
        arg_max(value, fetched_at) filter (where measure = 5) as cache_write_tokens,
        arg_max(value, fetched_at) filter (where measure = 6) as throttles,
        arg_max(value, fetched_at) filter (where measure = 7) as client_errors,
        arg_max(value, fetched_at) filter (where measure = 8) as server_errors,
        arg_max(value, fetched_at) filter (where measure = 9) as estimated_tpm_quota_usage,
        arg_max(value, fetched_at) filter (where measure = 10) as latency_avg_ms,
        arg_max(value, fetched_at) filter (where measure = 11) as latency_samples,
        arg_max(value, fetched_at) filter (where measure = 12) as ttft_avg_ms,
        arg_max(value, fetched_at) filter (where measure = 13) as ttft_samples
    from measured
    group by region, series_id, period_s, ts
)

select
    cast(region as varchar) as region,
    cast(account_id as varchar) as account_id,
    cast(series_id as varchar) as series_id,
    cast(period_s as integer) as period_s,
    cast(ts as timestamp) as ts,
    cast(invocations as double) as invocations,
    cast(input_tokens as double) as input_tokens,
    cast(output_tokens as double) as output_tokens,
    cast(cache_read_tokens as double) as cache_read_tokens,
    cast(cache_write_tokens as double) as cache_write_tokens,
    cast(throttles as double) as throttles,
    cast(client_errors as double) as client_errors,
    cast(server_errors as double) as server_errors,
    cast(estimated_tpm_quota_usage as double) as estimated_tpm_quota_usage,
    cast(latency_avg_ms as double) as latency_avg_ms,
    cast(latency_samples as double) as latency_samples,
    cast(ttft_avg_ms as double) as ttft_avg_ms,
    cast(ttft_samples as double) as ttft_samples
from latest
-- Rows of metrics the warehouse does not use have no measure and feed no column above. A key that had only
-- such rows is dropped here, after the aggregation: a filter on the measure before it would evaluate the
-- measure twice per raw row.
where
    coalesce(
        invocations,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        throttles,
        client_errors,
        server_errors,
        estimated_tpm_quota_usage,
        latency_avg_ms,
        latency_samples,
        ttft_avg_ms,
        ttft_samples
    ) is not null
