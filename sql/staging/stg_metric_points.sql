-- CloudWatch datapoints of the AWS/Bedrock namespace, de-duplicated, with one column per (metric, statistic).
-- Grain: one row per region x series_id x period_s x ts (bucket start, naive UTC).
--
-- A datapoint is fetched more than once (a day is re-read while it fills up), but the lake holds it once: the
-- extract replaces the re-read range of a partition, and the blocking check no_duplicate_points proves on
-- every build that no (region, series, metric, statistic, period, ts) appears twice in the raw files. So the
-- pivot below takes the one value of each pair; this is the largest table of the warehouse (about nine raw
-- rows per series-minute) and a plain max is the cheapest aggregate that does it.

with source as (
    select * from raw_metric_points
),

-- The (metric, statistic) pairs the warehouse uses, each with a small integer: the thirteen filtered
-- aggregates below compare that integer rather than two strings. Other metrics fall out in the join.
measures as (
    select
        pairs.metric,
        pairs.stat,
        pairs.measure
    from (
        values
        ('Invocations', 'Sum', 1),
        ('InputTokenCount', 'Sum', 2),
        ('OutputTokenCount', 'Sum', 3),
        ('CacheReadInputTokenCount', 'Sum', 4),
        ('CacheWriteInputTokenCount', 'Sum', 5),
        ('InvocationThrottles', 'Sum', 6),
        ('InvocationClientErrors', 'Sum', 7),
        ('InvocationServerErrors', 'Sum', 8),
        ('EstimatedTPMQuotaUsage', 'Sum', 9),
        ('InvocationLatency', 'Average', 10),
        ('InvocationLatency', 'SampleCount', 11),
        ('TimeToFirstToken', 'Average', 12),
        ('TimeToFirstToken', 'SampleCount', 13)
    ) as pairs (metric, stat, measure)
),

measured as (
    select
        source.region,
        source.account_id,
        source.model_id as series_id,
        source.period_s,
        source.ts,
        source.value,
        source.fetched_at,
        measures.measure
    from source
    inner join measures
        on
            source.metric = measures.metric
            and source.stat = measures.stat
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
        max(value) filter (where measure = 1) as invocations,
        max(value) filter (where measure = 2) as input_tokens,
        max(value) filter (where measure = 3) as output_tokens,
        max(value) filter (where measure = 4) as cache_read_tokens,
        max(value) filter (where measure = 5) as cache_write_tokens,
        max(value) filter (where measure = 6) as throttles,
        max(value) filter (where measure = 7) as client_errors,
        max(value) filter (where measure = 8) as server_errors,
        max(value) filter (where measure = 9) as estimated_tpm_quota_usage,
        max(value) filter (where measure = 10) as latency_avg_ms,
        max(value) filter (where measure = 11) as latency_samples,
        max(value) filter (where measure = 12) as ttft_avg_ms,
        max(value) filter (where measure = 13) as ttft_samples
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
