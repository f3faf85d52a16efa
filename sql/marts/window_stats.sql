-- Distribution of every measure over the windows 1h, 1d, 7d, 14d and 30d ending at as_of, per series and for
-- the endpoint aggregate (series_id = '*', computed over endpoint_minute, i.e. over the per-minute sums).
-- Grain: one row per region x endpoint x series_id x window x metric.
--
-- A window of W minutes holds the minutes with as_of - W <= ts < as_of. Percentiles (quantile_cont: linear
-- interpolation between closest ranks), avg, max and count are over the window's active minutes (minutes with
-- a datapoint); window_points says how many minutes the window has, so zero-filled figures can be derived.
-- The metric tpd is the distribution of the rolling 24-hour token totals of tpd_daily whose day lies inside
-- the window (the 1h window uses the last 24 hours).

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
        resolution_s,
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
        ttft_ms
    from usage_minute
    where
        ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
),

aggregate_minutes as (
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        resolution_s,
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
        ttft_ms
    from endpoint_minute
    where
        ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
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
        max(resolution_s) as resolution_s,
        -- Count metrics are never null in an active minute, so one count serves them all.
        count(*) as active_minutes,
        quantile_cont(tpm, [0.5, 0.9, 0.99, 1]) as tpm_q,
        sum(tpm) as tpm_total,
        quantile_cont(quota_tpm, [0.5, 0.9, 0.99, 1]) as quota_tpm_q,
        sum(quota_tpm) as quota_tpm_total,
        quantile_cont(input_tokens, [0.5, 0.9, 0.99, 1]) as input_tokens_q,
        sum(input_tokens) as input_tokens_total,
        quantile_cont(output_tokens, [0.5, 0.9, 0.99, 1]) as output_tokens_q,
        sum(output_tokens) as output_tokens_total,
        quantile_cont(cache_read_tokens, [0.5, 0.9, 0.99, 1]) as cache_read_tokens_q,
        sum(cache_read_tokens) as cache_read_tokens_total,
        quantile_cont(cache_write_tokens, [0.5, 0.9, 0.99, 1]) as cache_write_tokens_q,
        sum(cache_write_tokens) as cache_write_tokens_total,
        quantile_cont(invocations, [0.5, 0.9, 0.99, 1]) as invocations_q,
        sum(invocations) as invocations_total,
        quantile_cont(throttles, [0.5, 0.9, 0.99, 1]) as throttles_q,
        sum(throttles) as throttles_total,
        quantile_cont(client_errors, [0.5, 0.9, 0.99, 1]) as client_errors_q,
        sum(client_errors) as client_errors_total,
        quantile_cont(server_errors, [0.5, 0.9, 0.99, 1]) as server_errors_q,
        sum(server_errors) as server_errors_total,
        quantile_cont(latency_ms, [0.5, 0.9, 0.99, 1]) as latency_ms_q,
        -- Summed for the average; the final select blanks the total (a sum of latencies means nothing).
        sum(latency_ms) as latency_ms_total,
        count(latency_ms) as latency_ms_n,
        quantile_cont(ttft_ms, [0.5, 0.9, 0.99, 1]) as ttft_ms_q,
        sum(ttft_ms) as ttft_ms_total,
        count(ttft_ms) as ttft_ms_n
    from windowed
    group by region, endpoint, series_id, "window"
),

-- UNPIVOT drops a row with a null value; the grid below brings back a row for every idle window and metric.
minute_metrics as (
    select * from (
        unpivot minute_stats
        on
        (tpm_q, tpm_total, active_minutes) as tpm,
        (quota_tpm_q, quota_tpm_total, active_minutes) as quota_tpm,
        -- RPM is the number of invocations in the minute: the same figures under the quota's name.
        (invocations_q, invocations_total, active_minutes) as rpm,
        (input_tokens_q, input_tokens_total, active_minutes) as input_tokens,
        (output_tokens_q, output_tokens_total, active_minutes) as output_tokens,
        (cache_read_tokens_q, cache_read_tokens_total, active_minutes) as cache_read_tokens,
        (cache_write_tokens_q, cache_write_tokens_total, active_minutes) as cache_write_tokens,
        (invocations_q, invocations_total, active_minutes) as invocations,
        (throttles_q, throttles_total, active_minutes) as throttles,
        (client_errors_q, client_errors_total, active_minutes) as client_errors,
        (server_errors_q, server_errors_total, active_minutes) as server_errors,
        (latency_ms_q, latency_ms_total, latency_ms_n) as latency_ms,
        (ttft_ms_q, ttft_ms_total, ttft_ms_n) as ttft_ms
        into name metric value quantiles, total, active_points
    )
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
        -- Whole rolling days inside the window; a window shorter than a day reads the last 24 hours.
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
        sum(tokens) as total,
        count(tokens) as active_points,
        max(resolution_s) as resolution_s
    from tpd_days
    group by region, endpoint, series_id, "window"
),

stats as (
    select
        minute_metrics.region,
        minute_metrics.endpoint,
        minute_metrics.series_id,
        minute_metrics."window",
        minute_metrics.metric,
        minute_metrics.quantiles,
        minute_metrics.total,
        minute_metrics.active_points,
        minute_metrics.resolution_s
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
        resolution_s
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

-- Coverage of each window per region: how many of its minutes were read at each period (the finest one where
-- several ranges overlap), and the first covered minute.
coverage_minutes as (
    select
        coverage.region,
        grid_minutes.ts,
        min(coverage.period_s) as period_s
    from (
        select unnest(generate_series(
            getvariable('as_of') - to_minutes((select horizon.minutes from horizon)),
            getvariable('as_of') - interval 1 minute,
            interval 1 minute
        )) as ts
    ) as grid_minutes
    inner join stg_metric_coverage as coverage
        on
            grid_minutes.ts >= coverage.range_start
            and grid_minutes.ts < coverage.range_end
    group by coverage.region, grid_minutes.ts
),

window_coverage as (
    select
        coverage_minutes.region,
        windows."window",
        count(*) filter (where coverage_minutes.period_s = 60) as covered_minutes_1min,
        count(*) filter (where coverage_minutes.period_s = 300) as covered_minutes_5min,
        count(*) filter (where coverage_minutes.period_s = 3600) as covered_minutes_1h,
        min(coverage_minutes.ts) as coverage_start
    from coverage_minutes
    inner join windows
        on coverage_minutes.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
    group by coverage_minutes.region, windows."window"
)

select
    cast(grid.region as varchar) as region,
    cast(grid.endpoint as varchar) as endpoint,
    cast(grid.series_id as varchar) as series_id,
    cast(grid."window" as varchar) as "window",
    cast(grid.window_minutes as integer) as window_minutes,
    cast(grid.metric as varchar) as metric,
    cast(stats.quantiles[1] as double) as p50,
    cast(stats.quantiles[2] as double) as p90,
    cast(stats.quantiles[3] as double) as p99,
    cast(stats.total / nullif(stats.active_points, 0) as double) as avg,
    cast(stats.quantiles[4] as double) as max,
    cast(
        case
            when grid.metric in ('latency_ms', 'ttft_ms') then null
            else coalesce(stats.total, 0)
        end as double
    ) as total,
    cast(coalesce(stats.active_points, 0) as integer) as active_points,
    cast(
        case
            when grid.metric = 'tpd' then greatest(1, grid.window_minutes // 1440)
            else grid.window_minutes
        end as integer
    ) as window_points,
    cast(stats.resolution_s as integer) as resolution_s,
    cast(coalesce(window_coverage.covered_minutes_1min, 0) as integer) as covered_minutes_1min,
    cast(coalesce(window_coverage.covered_minutes_5min, 0) as integer) as covered_minutes_5min,
    cast(coalesce(window_coverage.covered_minutes_1h, 0) as integer) as covered_minutes_1h,
    cast(window_coverage.coverage_start as timestamp) as coverage_start,
    cast(getvariable('as_of') as timestamp) as as_of
from grid
left join stats
    on
        grid.region = stats.region
        and grid.endpoint = stats.endpoint
        and grid.series_id = stats.series_id
        and grid."window" = stats."window"
        and grid.metric = stats.metric
left join window_coverage
    on
        grid.region = window_coverage.region
        and grid."window" = window_coverage."window"
