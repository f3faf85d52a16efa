-- How close each endpoint came to its tokens-per-minute, requests-per-minute and tokens-per-day quotas in
-- each window ending at as_of, measured the way Bedrock counts them.
-- Grain: one row per region x endpoint x quota_type (tpm, rpm, tpd) x window, for every endpoint quota_map
-- gives a quota of that type (an endpoint without traffic in a window has active_points = 0).
--
-- Usage is the endpoint aggregate (endpoint_minute: the per-minute sum over the endpoint's series):
--   tpm: quota_tpm, i.e. CloudWatch's EstimatedTPMQuotaUsage where published, else input + cache write +
--        output x burndown. Both are kept (p90/max_estimated, p90/max_computed) so a difference shows;
--   rpm: invocations per minute;
--   tpd: quota_tokens of the rolling 24-hour days of tpd_daily (the burndown counts against the daily quota
--        too). For tpd the minute counters count days: minutes_over_80 is the number of rolling days whose
--        total reached 80 % of the quota, active_points the days with traffic, window_points the days in the
--        window (1 for 1h and 1d: the last 24 hours).
-- quota_value is the value usage is compared with: the quota in force at as_of (applied, else AWS default),
-- doubled for the tokens-per-day quota of a geographic cross-region endpoint (quota_map.effective_value).
-- Percentiles are quantile_cont over active minutes (or days), as in window_stats.
--
-- Resolution is explicit, as in window_stats: the minute figures (p90, max, minutes_over_*, minutes_at_quota,
-- throttled_minutes, active_points) are over 1-minute data only, and window_points is the number of minutes
-- read at 1-minute resolution (window_coverage); the columns ending in _5min are the same figures over the
-- endpoint's 5-minute buckets (rate = bucket sum / 5), max_bound_5min the largest bucket sum (the busiest
-- minute lies between max_5min and it). For tpd, max_sliding is the worst sliding 1,440-minute window ending
-- inside the window's days (tpd_daily.sliding_quota_tokens), beside the anchored days' max. A Claude model
-- that burns output tokens down but has no row in the burndown seed is counted at 1x and says so in rule and
-- burndown_warning.
--
-- CloudWatch shows settled token counts, while Bedrock admits a request against a counter that also holds the
-- max_tokens it reserved for requests in flight; accepted usage therefore stays just under the quota even in
-- minutes Bedrock throttled. minutes_at_quota counts the minutes that reached the quota by either evidence:
-- measured usage >= 100 %, or throttled requests while measured usage was >= 80 %.

with quotas as (
    select
        region,
        endpoint,
        endpoint_kind,
        model_id,
        quota_type,
        quota_code,
        quota_name,
        rule,  -- noqa: RF04
        quota_value as listed_value,
        applied_value,
        default_value,
        effective_value,
        snapshot_at
    from quota_map
    where quota_type in ('tpm', 'rpm', 'tpd')
),

windows as (
    select
        cast("window" as varchar) as "window",
        cast(window_minutes as integer) as window_minutes
    from time_windows
),

horizon as (
    select max(window_minutes) as minutes from windows
),

endpoint_minutes as (
    select
        region,
        endpoint,
        ts,
        quota_tpm,
        quota_tpm_computed,
        estimated_tpm_quota_usage,
        rpm,
        throttles
    from endpoint_minute
    where
        resolution_s = 60
        and ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
),

minute_usage as (
    select
        region,
        endpoint,
        ts,
        'tpm' as quota_type,
        quota_tpm as used,
        quota_tpm_computed as usage_computed,
        estimated_tpm_quota_usage as usage_estimated,
        throttles
    from endpoint_minutes
    union all
    select
        region,
        endpoint,
        ts,
        'rpm' as quota_type,
        rpm as used,
        cast(null as double) as usage_computed,
        cast(null as double) as usage_estimated,
        throttles
    from endpoint_minutes
),

minute_windowed as (
    select
        windows."window",
        quotas.effective_value,
        minute_usage.*
    from minute_usage
    inner join quotas
        on
            minute_usage.region = quotas.region
            and minute_usage.endpoint = quotas.endpoint
            and minute_usage.quota_type = quotas.quota_type
    inner join windows
        on minute_usage.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
),

minute_stats as (
    select
        region,
        endpoint,
        quota_type,
        "window",
        quantile_cont(used, 0.9) as p90,
        max(used) as max_usage,
        count(used) as active_points,
        count(*) filter (where used >= 0.8 * effective_value) as minutes_over_80,
        count(*) filter (where used >= effective_value) as minutes_over_100,
        count(*) filter (
            where used >= effective_value or (throttles > 0 and used >= 0.8 * effective_value)
        ) as minutes_at_quota,
        count(*) filter (where throttles > 0) as throttled_minutes,
        quantile_cont(usage_computed, 0.9) as p90_computed,
        max(usage_computed) as max_computed,
        quantile_cont(usage_estimated, 0.9) as p90_estimated,
        max(usage_estimated) as max_estimated,
        count(usage_estimated) as estimated_points,
        cast(null as double) as max_sliding
    from minute_windowed
    group by region, endpoint, quota_type, "window"
),

endpoint_buckets as (
    select
        region,
        endpoint,
        ts,
        sum(cast(quota_tokens as decimal(18, 3))) as quota_tokens,
        sum(invocations) as invocations
    from usage_bucket
    where
        resolution_s = 300
        and ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
    group by region, endpoint, ts
),

bucket_usage as (
    select
        region,
        endpoint,
        ts,
        'tpm' as quota_type,
        cast(quota_tokens as double) as bucket_sum
    from endpoint_buckets
    union all
    select
        region,
        endpoint,
        ts,
        'rpm' as quota_type,
        cast(invocations as double) as bucket_sum
    from endpoint_buckets
),

bucket_stats as (
    select
        bucket_usage.region,
        bucket_usage.endpoint,
        bucket_usage.quota_type,
        windows."window",
        count(*) as buckets_5min,
        quantile_cont(bucket_usage.bucket_sum / 5, 0.9) as p90_5min,
        max(bucket_usage.bucket_sum) / 5 as max_5min,
        max(bucket_usage.bucket_sum) as max_bound_5min
    from bucket_usage
    inner join windows
        on bucket_usage.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
    group by all
),

day_windowed as (
    select
        windows."window",
        quotas.effective_value,
        tpd_daily.region,
        tpd_daily.endpoint,
        tpd_daily.quota_tokens as used,
        tpd_daily.sliding_quota_tokens
    from tpd_daily
    inner join quotas
        on
            tpd_daily.region = quotas.region
            and tpd_daily.endpoint = quotas.endpoint
            and quotas.quota_type = 'tpd'
    inner join windows
        -- Whole rolling days inside the window; a window shorter than a day reads the last 24 hours.
        on tpd_daily.day_index < greatest(1, windows.window_minutes // 1440)
    where tpd_daily.series_id = '*'
),

day_stats as (
    select
        region,
        endpoint,
        'tpd' as quota_type,
        "window",
        quantile_cont(used, 0.9) as p90,
        max(used) as max_usage,
        count(used) as active_points,
        count(*) filter (where used >= 0.8 * effective_value) as minutes_over_80,
        count(*) filter (where used >= effective_value) as minutes_over_100,
        count(*) filter (where used >= effective_value) as minutes_at_quota,
        max(sliding_quota_tokens) as max_sliding,
        cast(null as bigint) as throttled_minutes,
        cast(null as double) as p90_computed,
        cast(null as double) as max_computed,
        cast(null as double) as p90_estimated,
        cast(null as double) as max_estimated,
        cast(null as bigint) as estimated_points
    from day_windowed
    group by region, endpoint, "window"
),

stats as (
    select * from minute_stats
    union all by name
    select * from day_stats
),

burndown_gaps as (
    select distinct
        region,
        base_model_id
    from model_burndown
    where missing_burndown
),

grid as (
    select
        quotas.*,
        windows."window",
        windows.window_minutes
    from quotas
    cross join windows
),

headroom as (
    select
        grid.*,
        stats.p90,
        stats.max_usage,
        stats.p90_computed,
        stats.max_computed,
        stats.p90_estimated,
        stats.max_estimated,
        coalesce(stats.active_points, 0) as active_points,
        stats.max_sliding,
        bucket_stats.buckets_5min,
        bucket_stats.p90_5min,
        bucket_stats.max_5min,
        bucket_stats.max_bound_5min,
        window_coverage.covered_minutes_1min,
        window_coverage.covered_minutes_5min,
        window_coverage.covered_minutes_1h,
        window_coverage.uncovered_minutes,
        burndown_gaps.base_model_id is not null and grid.quota_type in ('tpm', 'tpd') as burndown_missing,
        coalesce(stats.minutes_over_80, 0) as minutes_over_80,
        coalesce(stats.minutes_over_100, 0) as minutes_over_100,
        coalesce(stats.minutes_at_quota, 0) as minutes_at_quota,
        case
            when grid.quota_type = 'tpd' then null
            else coalesce(stats.throttled_minutes, 0)
        end as throttled_minutes,
        case
            when grid.quota_type <> 'tpm' then null
            else coalesce(stats.estimated_points, 0)
        end as estimated_points,
        case
            when grid.quota_type = 'tpd' then greatest(1, grid.window_minutes // 1440)
            else greatest(coalesce(window_coverage.covered_minutes_1min, 0), coalesce(stats.active_points, 0))
        end as window_points
    from grid
    left join stats
        on
            grid.region = stats.region
            and grid.endpoint = stats.endpoint
            and grid.quota_type = stats.quota_type
            and grid."window" = stats."window"
    left join bucket_stats
        on
            grid.region = bucket_stats.region
            and grid.endpoint = bucket_stats.endpoint
            and grid.quota_type = bucket_stats.quota_type
            and grid."window" = bucket_stats."window"
    left join window_coverage
        on
            grid.region = window_coverage.region
            and grid."window" = window_coverage."window"
    left join burndown_gaps
        on
            grid.region = burndown_gaps.region
            and grid.model_id = burndown_gaps.base_model_id
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast(endpoint_kind as varchar) as endpoint_kind,
    cast(model_id as varchar) as model_id,
    cast(quota_type as varchar) as quota_type,
    cast(quota_code as varchar) as quota_code,
    cast(quota_name as varchar) as quota_name,
    -- quota_map names the column rule (docs/data-dictionary.md); sqlfluff flags the keyword
    -- either way it is written.
    cast(
        case
            when burndown_missing then rule || '; warning: no burndown rate in the seed, output counted at 1x'
            else rule
        end as varchar
    ) as rule,  -- noqa: RF04
    cast(
        case
            when burndown_missing
                then
                    model_id || ' is a Claude model that burns output tokens down, but sql/seeds/'
                    || 'burndown_rates.csv has no row for it: quota usage counts its output at 1x '
                    || 'and is too low'
        end as varchar
    ) as burndown_warning,
    cast(effective_value as double) as quota_value,
    cast(listed_value as double) as listed_value,
    cast(applied_value as double) as applied_value,
    cast(default_value as double) as default_value,
    cast(snapshot_at as timestamp) as quota_snapshot_at,
    cast("window" as varchar) as "window",
    cast(window_minutes as integer) as window_minutes,
    cast(
        case quota_type
            when 'tpm' then 'quota_tpm'
            when 'rpm' then 'rpm'
            else 'tpd'
        end as varchar
    ) as usage_metric,
    cast(p90 as double) as p90,
    cast(max_usage as double) as max,
    cast(p90 / nullif(effective_value, 0) as double) as utilisation_p90,
    cast(max_usage / nullif(effective_value, 0) as double) as utilisation_max,
    cast(minutes_over_80 as integer) as minutes_over_80,
    cast(minutes_over_100 as integer) as minutes_over_100,
    cast(minutes_at_quota as integer) as minutes_at_quota,
    cast(throttled_minutes as integer) as throttled_minutes,
    cast(active_points as integer) as active_points,
    cast(window_points as integer) as window_points,
    cast(p90_computed as double) as p90_computed,
    cast(max_computed as double) as max_computed,
    cast(p90_estimated as double) as p90_estimated,
    cast(max_estimated as double) as max_estimated,
    cast(estimated_points as integer) as estimated_points,
    cast(max_sliding as double) as max_sliding,
    cast(max_sliding / nullif(effective_value, 0) as double) as utilisation_max_sliding,
    cast(case when quota_type <> 'tpd' then coalesce(buckets_5min, 0) end as integer) as buckets_5min,
    cast(p90_5min as double) as p90_5min,
    cast(max_5min as double) as max_5min,
    cast(max_bound_5min as double) as max_bound_5min,
    cast(coalesce(covered_minutes_1min, 0) as integer) as covered_minutes_1min,
    cast(coalesce(covered_minutes_5min, 0) as integer) as covered_minutes_5min,
    cast(coalesce(covered_minutes_1h, 0) as integer) as covered_minutes_1h,
    cast(coalesce(uncovered_minutes, window_minutes) as integer) as uncovered_minutes,
    cast(
        case
            when quota_type <> 'tpm' or active_points = 0 then null
            when estimated_points = 0 then 'computed'
            when estimated_points < active_points then 'mixed'
            when abs(max_estimated - max_computed) > 0.01 * greatest(max_estimated, max_computed)
                then 'estimated, differs from computed'
            else 'estimated'
        end as varchar
    ) as usage_source,
    cast(getvariable('as_of') as timestamp) as as_of
from headroom
