-- Distribution of every measure over the windows 1h, 1d, 7d, 14d and 30d ending at as_of, per series and for
-- the endpoint aggregate (series_id = '*', computed over the per-minute sums of endpoint_minute).
-- Grain: one row per region x endpoint x series_id x window x metric.
--
-- Resolution is explicit. The statistics over minutes (p50, p90, p99, avg, max, active_points, the
-- zero-filled percentiles) are computed from 1-minute data only: a coarse bucket says how much happened in
-- its minutes, not in which of them. window_points is the number of minutes of the window read at 1-minute
-- resolution (window_coverage), so idle minutes count as zeros only where the warehouse knows they were idle.
-- total sums every resolution. The columns ending in _5min are the same figures over the window's 5-minute
-- buckets (rate = bucket sum / 5, counted in buckets); max_bound_5min is the largest bucket sum, the upper
-- end of the bracket max_5min <= busiest minute <= max_bound_5min. 1-hour buckets count in total only.
--
-- A window of W minutes holds the minutes with as_of - W <= ts < as_of, and the buckets that start in it.
-- Percentiles are quantile_cont (linear interpolation between closest ranks). Latency and time to first
-- token: avg is weighted by CloudWatch's SampleCount (the requests' mean), the percentiles are percentiles of
-- the per-minute averages. Counts are summed as integers (and quota tokens as decimals), so two builds give
-- the same figures to the last bit. The metric tpd is the distribution of the anchored 24-hour days of
-- tpd_daily inside the window (the 1h window uses the last 24 hours).

with windows as (
    select
        cast("window" as varchar) as "window",
        cast(window_minutes as integer) as window_minutes
    from time_windows
),

horizon as (
    select max(window_minutes) as minutes from windows
),

series_minutes as (
    select
        region,
        endpoint,
        series_id,
        ts,
        tpm,
        quota_tpm,
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
        ttft_samples
    from usage_minute
    where
        resolution_s = 60
        and ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
),

aggregate_minutes as (
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        tpm,
        quota_tpm,
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
        ttft_samples
    from endpoint_minute
    where
        resolution_s = 60
        and ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
),

minutes as (
    select * from series_minutes
    union all
    select * from aggregate_minutes
),

-- Every window ends at as_of, so a minute belongs to each window at least as long as its age. Unnesting the
-- list of those windows copies the minute into them without the sort an inequality join would need.
window_list as (
    select list(struct_pack("window" := "window", window_minutes := window_minutes)) as windows
    from windows
),

windowed as (
    select
        minutes.*,
        unnest(
            list_filter(
                (select window_list.windows from window_list),
                lambda w: w.window_minutes >= datediff('minute', minutes.ts, getvariable('as_of'))
            )
        )."window" as "window"
    from minutes
),

-- One quantile list per metric gives p50, p90, p99 and (as the 1-quantile) the max; avg is total / count.
-- That keeps the aggregation, the costliest step, to the aggregates it cannot do without.
minute_stats as (
    select
        region,
        endpoint,
        series_id,
        "window",
        -- Count metrics are never null in an active minute, so one count serves them all.
        count(*) as active_minutes,
        quantile_cont(tpm, [0.5, 0.9, 0.99, 1]) as tpm_q,
        sum(cast(tpm as decimal(18, 3))) as tpm_total,
        quantile_cont(quota_tpm, [0.5, 0.9, 0.99, 1]) as quota_tpm_q,
        sum(cast(quota_tpm as decimal(18, 3))) as quota_tpm_total,
        quantile_cont(input_tokens, [0.5, 0.9, 0.99, 1]) as input_tokens_q,
        sum(cast(input_tokens as decimal(18, 3))) as input_tokens_total,
        quantile_cont(output_tokens, [0.5, 0.9, 0.99, 1]) as output_tokens_q,
        sum(cast(output_tokens as decimal(18, 3))) as output_tokens_total,
        quantile_cont(cache_read_tokens, [0.5, 0.9, 0.99, 1]) as cache_read_tokens_q,
        sum(cast(cache_read_tokens as decimal(18, 3))) as cache_read_tokens_total,
        quantile_cont(cache_write_tokens, [0.5, 0.9, 0.99, 1]) as cache_write_tokens_q,
        sum(cast(cache_write_tokens as decimal(18, 3))) as cache_write_tokens_total,
        quantile_cont(invocations, [0.5, 0.9, 0.99, 1]) as invocations_q,
        sum(cast(invocations as decimal(18, 3))) as invocations_total,
        quantile_cont(throttles, [0.5, 0.9, 0.99, 1]) as throttles_q,
        sum(cast(throttles as decimal(18, 3))) as throttles_total,
        quantile_cont(client_errors, [0.5, 0.9, 0.99, 1]) as client_errors_q,
        sum(cast(client_errors as decimal(18, 3))) as client_errors_total,
        quantile_cont(server_errors, [0.5, 0.9, 0.99, 1]) as server_errors_q,
        sum(cast(server_errors as decimal(18, 3))) as server_errors_total,
        quantile_cont(latency_ms, [0.5, 0.9, 0.99, 1]) as latency_ms_q,
        -- The request-weighted sum for the average; the final select blanks the total (a sum of latencies
        -- means nothing).
        sum(cast(latency_ms * latency_samples as decimal(18, 3))) as latency_ms_total,
        sum(cast(latency_samples as decimal(18, 3))) filter (
            where latency_ms is not null
        ) as latency_ms_weight,
        count(latency_ms) as latency_ms_n,
        quantile_cont(ttft_ms, [0.5, 0.9, 0.99, 1]) as ttft_ms_q,
        sum(cast(ttft_ms * ttft_samples as decimal(18, 3))) as ttft_ms_total,
        sum(cast(ttft_samples as decimal(18, 3))) filter (where ttft_ms is not null) as ttft_ms_weight,
        count(ttft_ms) as ttft_ms_n
    from windowed
    group by region, endpoint, series_id, "window"
),

-- UNPIVOT drops a row with a null value; the grid below brings back a row for every idle window and metric.
-- The weight of a count metric is its number of active minutes (a plain mean).
minute_metrics as (
    select * from (
        unpivot (
            select
                *,
                cast(active_minutes as decimal(18, 3)) as minutes_weight
            from minute_stats
        )
        on
        (tpm_q, tpm_total, active_minutes, minutes_weight) as tpm,
        (quota_tpm_q, quota_tpm_total, active_minutes, minutes_weight) as quota_tpm,
        -- RPM is the number of invocations in the minute: the same figures under the quota's name.
        (invocations_q, invocations_total, active_minutes, minutes_weight) as rpm,
        (input_tokens_q, input_tokens_total, active_minutes, minutes_weight) as input_tokens,
        (output_tokens_q, output_tokens_total, active_minutes, minutes_weight) as output_tokens,
        (cache_read_tokens_q, cache_read_tokens_total, active_minutes, minutes_weight) as cache_read_tokens,
        (
            cache_write_tokens_q, cache_write_tokens_total, active_minutes, minutes_weight
        ) as cache_write_tokens,
        (invocations_q, invocations_total, active_minutes, minutes_weight) as invocations,
        (throttles_q, throttles_total, active_minutes, minutes_weight) as throttles,
        (client_errors_q, client_errors_total, active_minutes, minutes_weight) as client_errors,
        (server_errors_q, server_errors_total, active_minutes, minutes_weight) as server_errors,
        (latency_ms_q, latency_ms_total, latency_ms_n, latency_ms_weight) as latency_ms,
        (ttft_ms_q, ttft_ms_total, ttft_ms_n, ttft_ms_weight) as ttft_ms
        into name metric value quantiles, total, active_points, weight
    )
),

-- Zero-filled percentiles of the quota metrics: over the N minutes of a window read at 1-minute resolution,
-- idle ones as 0 (N is never less than the active minutes: a datapoint outside every recorded coverage range
-- is still a minute that was read). The idle minutes are added as zero rows, so quantile_cont computes them
-- exactly as it does the active-minute percentiles.
idle_minutes as (
    select
        minute_stats.region,
        minute_stats.endpoint,
        minute_stats.series_id,
        minute_stats."window",
        0.0 as tpm,
        0.0 as quota_tpm,
        0.0 as invocations,
        unnest(
            range(
                greatest(coalesce(window_coverage.covered_minutes_1min, 0) - minute_stats.active_minutes, 0)
            )
        ) as idle_index
    from minute_stats
    left join window_coverage
        on
            minute_stats.region = window_coverage.region
            and minute_stats."window" = window_coverage."window"
),

zero_filled_stats as (
    select
        region,
        endpoint,
        series_id,
        "window",
        quantile_cont(tpm, [0.5, 0.9, 0.99]) as tpm,
        quantile_cont(quota_tpm, [0.5, 0.9, 0.99]) as quota_tpm,
        quantile_cont(invocations, [0.5, 0.9, 0.99]) as invocations
    from (
        select
            region,
            endpoint,
            series_id,
            "window",
            tpm,
            quota_tpm,
            invocations
        from windowed
        union all
        select
            region,
            endpoint,
            series_id,
            "window",
            tpm,
            quota_tpm,
            invocations
        from idle_minutes
    ) as read_minutes
    group by region, endpoint, series_id, "window"
),

zero_filled as (
    select * from (
        unpivot (
            select
                *,
                invocations as rpm
            from zero_filled_stats
        )
        on tpm, quota_tpm, invocations, rpm
        into name metric value zero_filled_quantiles
    )
),

-- Coarse buckets: per series, and per endpoint as the per-bucket sums of its series.
series_buckets as (
    select
        region,
        endpoint,
        series_id,
        ts,
        resolution_s,
        bucket_minutes,
        tokens as tpm,
        quota_tokens as quota_tpm,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        invocations,
        throttles,
        client_errors,
        server_errors,
        latency_ms * latency_samples as latency_weighted,
        latency_samples,
        ttft_ms * ttft_samples as ttft_weighted,
        ttft_samples
    from usage_bucket
    where
        ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
),

buckets as (
    select * from series_buckets
    union all
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        resolution_s,
        any_value(bucket_minutes) as bucket_minutes,
        sum(tpm) as tpm,
        sum(cast(quota_tpm as decimal(18, 3))) as quota_tpm,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(invocations) as invocations,
        sum(throttles) as throttles,
        sum(client_errors) as client_errors,
        sum(server_errors) as server_errors,
        sum(cast(latency_weighted as decimal(18, 3))) as latency_weighted,
        sum(latency_samples) as latency_samples,
        sum(cast(ttft_weighted as decimal(18, 3))) as ttft_weighted,
        sum(ttft_samples) as ttft_samples
    from series_buckets
    group by region, endpoint, ts, resolution_s
),

bucket_values as (
    select * from (
        unpivot (
            select
                region,
                endpoint,
                series_id,
                ts,
                resolution_s,
                bucket_minutes,
                cast(tpm as decimal(18, 3)) as tpm,
                cast(quota_tpm as decimal(18, 3)) as quota_tpm,
                cast(invocations as decimal(18, 3)) as rpm,
                cast(input_tokens as decimal(18, 3)) as input_tokens,
                cast(output_tokens as decimal(18, 3)) as output_tokens,
                cast(cache_read_tokens as decimal(18, 3)) as cache_read_tokens,
                cast(cache_write_tokens as decimal(18, 3)) as cache_write_tokens,
                cast(invocations as decimal(18, 3)) as invocations,
                cast(throttles as decimal(18, 3)) as throttles,
                cast(client_errors as decimal(18, 3)) as client_errors,
                cast(server_errors as decimal(18, 3)) as server_errors,
                cast(latency_weighted as decimal(18, 3)) as latency_ms,
                cast(ttft_weighted as decimal(18, 3)) as ttft_ms,
                cast(latency_samples as decimal(18, 3)) as latency_weight,
                cast(ttft_samples as decimal(18, 3)) as ttft_weight
            from buckets
        )
        on
        tpm, quota_tpm, rpm, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, invocations,
        throttles, client_errors, server_errors, latency_ms, ttft_ms
        into name metric value bucket_sum
    )
),

bucket_windowed as (
    select
        bucket_values.*,
        windows."window",
        case bucket_values.metric
            when 'latency_ms' then bucket_values.latency_weight
            when 'ttft_ms' then bucket_values.ttft_weight
        end as weight,
        -- A bucket's per-minute rate, or for latency its request-weighted average.
        case
            when bucket_values.metric in ('latency_ms', 'ttft_ms')
                then cast(bucket_values.bucket_sum as double) / nullif(
                    case bucket_values.metric
                        when 'latency_ms' then bucket_values.latency_weight
                        else bucket_values.ttft_weight
                    end, 0
                )
            else cast(bucket_values.bucket_sum as double) / bucket_values.bucket_minutes
        end as rate
    from bucket_values
    inner join windows
        on bucket_values.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
),

bucket_stats as (
    select
        region,
        endpoint,
        series_id,
        "window",
        metric,
        sum(bucket_sum) filter (where resolution_s = 300) as total_5min,
        sum(bucket_sum) filter (where resolution_s <> 300) as total_1h,
        count(*) filter (where resolution_s = 300) as buckets_5min,
        count(*) filter (where resolution_s <> 300) as buckets_1h,
        quantile_cont(rate, [0.5, 0.9, 0.99, 1]) filter (where resolution_s = 300) as quantiles_5min,
        max(bucket_sum) filter (where resolution_s = 300) as max_bound_5min,
        sum(weight) filter (where resolution_s = 300) as weight_5min
    from bucket_windowed
    group by region, endpoint, series_id, "window", metric
),

tpd_days as (
    select
        tpd_daily.region,
        tpd_daily.endpoint,
        tpd_daily.series_id,
        windows."window",
        tpd_daily.tokens,
        tpd_daily.resolution_s
    from tpd_daily
    inner join windows
        -- Whole anchored days inside the window; a window shorter than a day reads the last 24 hours.
        on tpd_daily.day_index < greatest(1, windows.window_minutes // 1440)
),

tpd_metric as (
    select
        region,
        endpoint,
        series_id,
        "window",
        'tpd' as metric,
        quantile_cont(tokens, [0.5, 0.9, 0.99, 1]) as quantiles,
        sum(cast(tokens as decimal(18, 3))) as total,
        count(tokens) as active_points,
        cast(count(tokens) as decimal(18, 3)) as weight,
        max(resolution_s) as resolution_s
    from tpd_days
    group by region, endpoint, series_id, "window"
),

stats as (
    select
        region,
        endpoint,
        series_id,
        "window",
        metric,
        quantiles,
        total,
        active_points,
        weight
    from minute_metrics
    union all
    select
        region,
        endpoint,
        series_id,
        "window",
        metric,
        quantiles,
        total,
        active_points,
        weight
    from tpd_metric
),

-- Every series active anywhere in the longest window gets a row for every window and metric, so an idle
-- window shows as active_points = 0 instead of a missing row.
series_keys as (
    select distinct
        region,
        endpoint,
        series_id
    from minute_stats
    union
    select distinct
        region,
        endpoint,
        series_id
    from bucket_stats
),

metric_names as (
    select unnest([
        'tpm', 'quota_tpm', 'rpm', 'tpd', 'input_tokens', 'output_tokens', 'cache_read_tokens',
        'cache_write_tokens', 'invocations', 'throttles', 'client_errors', 'server_errors', 'latency_ms',
        'ttft_ms'
    ]) as metric
),

grid as (
    select
        series_keys.region,
        series_keys.endpoint,
        series_keys.series_id,
        windows."window",
        windows.window_minutes,
        metric_names.metric
    from series_keys
    cross join windows
    cross join metric_names
),

joined as (
    select
        grid.*,
        grid.metric in ('latency_ms', 'ttft_ms') as is_average,
        stats.quantiles,
        stats.total,
        stats.active_points,
        stats.weight,
        tpd_metric.resolution_s as tpd_resolution_s,
        zero_filled.zero_filled_quantiles,
        bucket_stats.total_5min,
        bucket_stats.total_1h,
        bucket_stats.buckets_5min,
        bucket_stats.buckets_1h,
        bucket_stats.quantiles_5min,
        bucket_stats.max_bound_5min,
        bucket_stats.weight_5min,
        window_coverage.covered_minutes_1min,
        window_coverage.covered_minutes_5min,
        window_coverage.covered_minutes_1h,
        window_coverage.uncovered_minutes,
        window_coverage.coverage_start
    from grid
    left join stats
        on
            grid.region = stats.region
            and grid.endpoint = stats.endpoint
            and grid.series_id = stats.series_id
            and grid."window" = stats."window"
            and grid.metric = stats.metric
    left join tpd_metric
        on
            grid.metric = 'tpd'
            and grid.region = tpd_metric.region
            and grid.endpoint = tpd_metric.endpoint
            and grid.series_id = tpd_metric.series_id
            and grid."window" = tpd_metric."window"
    left join zero_filled
        on
            grid.region = zero_filled.region
            and grid.endpoint = zero_filled.endpoint
            and grid.series_id = zero_filled.series_id
            and grid."window" = zero_filled."window"
            and grid.metric = zero_filled.metric
    left join bucket_stats
        on
            grid.region = bucket_stats.region
            and grid.endpoint = bucket_stats.endpoint
            and grid.series_id = bucket_stats.series_id
            and grid."window" = bucket_stats."window"
            and grid.metric = bucket_stats.metric
    left join window_coverage
        on
            grid.region = window_coverage.region
            and grid."window" = window_coverage."window"
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast(series_id as varchar) as series_id,
    cast("window" as varchar) as "window",
    cast(window_minutes as integer) as window_minutes,
    cast(metric as varchar) as metric,
    cast(quantiles[1] as double) as p50,
    cast(quantiles[2] as double) as p90,
    cast(quantiles[3] as double) as p99,
    cast(total / nullif(weight, 0) as double) as avg,
    cast(quantiles[4] as double) as max,
    -- The minutes' total (1-minute data, anchored days for tpd) plus every coarse bucket's.
    cast(
        case
            when is_average then null
            when metric = 'tpd' then coalesce(total, 0)
            else coalesce(total, 0) + coalesce(total_5min, 0) + coalesce(total_1h, 0)
        end as double
    ) as total,
    cast(coalesce(active_points, 0) as integer) as active_points,
    cast(
        case
            when metric = 'tpd' then greatest(1, window_minutes // 1440)
            else greatest(coalesce(covered_minutes_1min, 0), coalesce(active_points, 0))
        end as integer
    ) as window_points,
    cast(zero_filled_quantiles[1] as double) as p50_zero_filled,
    cast(zero_filled_quantiles[2] as double) as p90_zero_filled,
    cast(zero_filled_quantiles[3] as double) as p99_zero_filled,
    cast(case when metric = 'tpd' then 86400 else 60 end as integer) as resolution_s,
    cast(
        case
            when is_average then 'per-minute averages'
            when metric = 'tpd' then 'anchored days'
            else 'active minutes'
        end as varchar
    ) as percentile_basis,
    cast(case when is_average then null else coalesce(total, 0) end as double) as total_1min,
    cast(case when is_average then null else coalesce(total_5min, 0) end as double) as total_5min,
    cast(case when is_average then null else coalesce(total_1h, 0) end as double) as total_1h,
    cast(coalesce(buckets_5min, 0) as integer) as buckets_5min,
    cast(quantiles_5min[1] as double) as p50_5min,
    cast(quantiles_5min[2] as double) as p90_5min,
    cast(quantiles_5min[3] as double) as p99_5min,
    cast(
        case
            when is_average then total_5min / nullif(weight_5min, 0)
            else total_5min / 5 / nullif(buckets_5min, 0)
        end as double
    ) as avg_5min,
    cast(quantiles_5min[4] as double) as max_5min,
    cast(case when is_average then null else max_bound_5min end as double) as max_bound_5min,
    cast(coalesce(covered_minutes_1min, 0) as integer) as covered_minutes_1min,
    cast(coalesce(covered_minutes_5min, 0) as integer) as covered_minutes_5min,
    cast(coalesce(covered_minutes_1h, 0) as integer) as covered_minutes_1h,
    cast(coalesce(uncovered_minutes, window_minutes) as integer) as uncovered_minutes,
    cast(
        case
            when metric = 'tpd' then tpd_resolution_s
            when buckets_1h > 0 then 3600
            when buckets_5min > 0 then 300
            when active_points > 0 then 60
        end as integer
    ) as coarsest_resolution_s,
    cast(coverage_start as timestamp) as coverage_start,
    cast(getvariable('as_of') as timestamp) as as_of
from joined
