-- What each series did in each coarse CloudWatch bucket (5-minute or 1-hour datapoints, read where CloudWatch
-- no longer held 1-minute data), as the bucket's sums: never spread over minutes.
-- Grain: one row per region x series_id x ts (bucket start, naive UTC) with at least one datapoint, for the
-- buckets used; resolution_s (300 or 3600) says the bucket's length.
--
-- A coarse bucket is used only where nothing finer was read: no finer coverage range of the region overlaps
-- it and the series has no finer datapoint inside it (if a finer range covers part of a bucket, the bucket is
-- dropped: using it would count the covered minutes twice). A bucket says how much happened in its minutes,
-- not in which of them, so the statistics over minutes never read these rows; totals and TPD do, and the
-- "at 5-minute resolution" figures are computed over buckets (rate = bucket sum / bucket minutes).

with coverage as (
    select
        region,
        period_s,
        range_start,
        range_end
    from stg_metric_coverage
),

coarse_series as (
    select distinct
        region,
        series_id,
        period_s
    from stg_metric_points
    where period_s > 60
),

-- The coarse buckets in which a series also has finer datapoints (empty unless coarse data exist).
finer_buckets as (
    select distinct
        finer.region,
        finer.series_id,
        coarse_series.period_s,
        time_bucket(to_seconds(coarse_series.period_s), finer.ts) as bucket_start
    from stg_metric_points as finer
    inner join coarse_series
        on
            finer.region = coarse_series.region
            and finer.series_id = coarse_series.series_id
            and finer.period_s < coarse_series.period_s
),

usable as (
    select points.*
    from stg_metric_points as points
    where
        points.period_s > 60
        and not exists (
            select 1
            from coverage
            where
                coverage.region = points.region
                and coverage.period_s < points.period_s
                and coverage.range_start < points.ts + to_seconds(points.period_s)
                and coverage.range_end > points.ts
        )
        and not exists (
            select 1
            from finer_buckets
            where
                finer_buckets.region = points.region
                and finer_buckets.series_id = points.series_id
                and finer_buckets.period_s = points.period_s
                and finer_buckets.bucket_start = points.ts
        )
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
        usable.region,
        usable.account_id,
        usable.series_id,
        coalesce(series.endpoint, usable.series_id) as endpoint,
        usable.ts,
        usable.period_s,
        coalesce(usable.input_tokens, 0) as input_tokens,
        coalesce(usable.output_tokens, 0) as output_tokens,
        coalesce(usable.cache_read_tokens, 0) as cache_read_tokens,
        coalesce(usable.cache_write_tokens, 0) as cache_write_tokens,
        coalesce(usable.invocations, 0) as invocations,
        coalesce(usable.throttles, 0) as throttles,
        coalesce(usable.client_errors, 0) as client_errors,
        coalesce(usable.server_errors, 0) as server_errors,
        usable.latency_avg_ms as latency_ms,
        case
            when usable.latency_avg_ms is not null then coalesce(usable.latency_samples, usable.invocations)
        end as latency_samples,
        usable.ttft_avg_ms as ttft_ms,
        case
            when usable.ttft_avg_ms is not null then coalesce(usable.ttft_samples, usable.invocations)
        end as ttft_samples,
        usable.estimated_tpm_quota_usage,
        coalesce(rates.output_multiplier, 1) as output_multiplier,
        coalesce(rates.cache_write_multiplier, 1) as cache_write_multiplier
    from usable
    left join series
        on
            usable.region = series.region
            and usable.series_id = series.series_id
    left join model_burndown as rates
        on
            series.region = rates.region
            and series.base_model_id = rates.base_model_id
            and (rates.valid_from is null or usable.ts >= rates.valid_from)
            and (rates.valid_to is null or usable.ts < rates.valid_to)
)

select
    cast(region as varchar) as region,
    cast(account_id as varchar) as account_id,
    cast(series_id as varchar) as series_id,
    cast(endpoint as varchar) as endpoint,
    cast(ts as timestamp) as ts,
    cast(period_s as integer) as resolution_s,
    cast(period_s // 60 as integer) as bucket_minutes,
    cast(input_tokens as bigint) as input_tokens,
    cast(output_tokens as bigint) as output_tokens,
    cast(cache_read_tokens as bigint) as cache_read_tokens,
    cast(cache_write_tokens as bigint) as cache_write_tokens,
    cast(invocations as bigint) as invocations,
    cast(throttles as bigint) as throttles,
    cast(client_errors as bigint) as client_errors,
    cast(server_errors as bigint) as server_errors,
    cast(latency_ms as double) as latency_ms,
    cast(latency_samples as bigint) as latency_samples,
    cast(ttft_ms as double) as ttft_ms,
    cast(ttft_samples as bigint) as ttft_samples,
    cast(input_tokens + output_tokens as bigint) as tokens,
    cast(
        input_tokens
        + cache_write_tokens * cache_write_multiplier
        + output_tokens * output_multiplier as double
    ) as quota_tokens_computed,
    cast(estimated_tpm_quota_usage as double) as estimated_tpm_quota_usage,
    cast(
        coalesce(
            estimated_tpm_quota_usage,
            input_tokens + cache_write_tokens * cache_write_multiplier + output_tokens * output_multiplier
        ) as double
    ) as quota_tokens,
    cast(output_multiplier as double) as output_multiplier
from measured
