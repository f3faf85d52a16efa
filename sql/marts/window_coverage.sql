-- What the warehouse read of each window, per region: how many of its minutes are known at 1-minute
-- resolution, how many only through coarser buckets, and how many were never read.
-- Grain: one row per region x window.
--
-- A minute is read at a period when a coverage range of that period (stg_metric_coverage) holds it or a
-- datapoint of that period covers it; where several periods read it, the finest counts. A read minute
-- without a datapoint was idle; an unread minute is unknown. The statistics over minutes (window_stats,
-- quota_headroom) take minutes_1min as the number of minutes they are over (window_points), so a gap in the
-- coverage is not taken for idle time.

with windows as (
    select
        cast("window" as varchar) as "window",
        cast(window_minutes as integer) as window_minutes
    from time_windows
),

horizon as (
    select max(window_minutes) as minutes from windows
),

grid_minutes as (
    select
        unnest(generate_series(
            getvariable('as_of') - to_minutes((select horizon.minutes from horizon)),
            getvariable('as_of') - interval 1 minute,
            interval 1 minute
        )) as ts
),

ranged as (
    select
        coverage.region,
        grid_minutes.ts,
        coverage.period_s
    from grid_minutes
    inner join stg_metric_coverage as coverage
        on
            grid_minutes.ts >= coverage.range_start
            and grid_minutes.ts < coverage.range_end
),

-- usage_minute lists every minute of a used coarse bucket with the bucket's resolution, so it names the
-- minutes datapoints cover at each period.
evidenced as (
    select
        region,
        ts,
        min(resolution_s) as period_s
    from usage_minute
    where
        ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
    group by region, ts
),

read_minutes as (
    select
        region,
        ts,
        min(period_s) as period_s
    from (
        select * from ranged
        union all
        select * from evidenced
    ) as periods
    group by region, ts
),

regions as (
    select distinct region from read_minutes
),

counted as (
    select
        read_minutes.region,
        windows."window",
        count(*) filter (where read_minutes.period_s = 60) as minutes_1min,
        count(*) filter (where read_minutes.period_s = 300) as minutes_5min,
        count(*) filter (where read_minutes.period_s > 60 and read_minutes.period_s <> 300) as minutes_1h,
        min(read_minutes.ts) as coverage_start
    from read_minutes
    inner join windows
        on read_minutes.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
    group by read_minutes.region, windows."window"
)

select
    cast(regions.region as varchar) as region,
    cast(windows."window" as varchar) as "window",
    cast(windows.window_minutes as integer) as window_minutes,
    cast(coalesce(counted.minutes_1min, 0) as integer) as covered_minutes_1min,
    cast(coalesce(counted.minutes_5min, 0) as integer) as covered_minutes_5min,
    cast(coalesce(counted.minutes_1h, 0) as integer) as covered_minutes_1h,
    cast(
        windows.window_minutes
        - coalesce(counted.minutes_1min, 0)
        - coalesce(counted.minutes_5min, 0)
        - coalesce(counted.minutes_1h, 0) as integer
    ) as uncovered_minutes,
    cast(counted.coverage_start as timestamp) as coverage_start,
    cast(getvariable('as_of') as timestamp) as as_of
from regions
cross join windows
left join counted
    on
        regions.region = counted.region
        and windows."window" = counted."window"
