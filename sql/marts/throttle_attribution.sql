-- Who was using an endpoint hardest when it was throttled, per window.
-- Grain: one row per region x endpoint x window x series_id ('*' = the endpoint as a whole), for endpoints
-- with at least one throttled minute or throttled 5-minute bucket in the window.
--
-- Throttled minutes are the endpoint's 1-minute rows with InvocationThrottles > 0 summed over its series
-- (throttle_minutes). For each series: how many of those minutes it was active in, and its tokens (input +
-- output), quota tokens (input + cache write + output x burndown, what the TPM quota counts) and requests in
-- them, each with its share of the endpoint's: a TPM throttle is driven by quota tokens, an RPM throttle by
-- requests. throttled_minutes_at_tpm / _at_rpm count the minutes in which that quota was at or near its limit
-- (throttle_minutes.limiting_quota). throttles counts every resolution; a coarse bucket with throttles says
-- nothing about which minutes were throttled, so it is counted in throttled_buckets_5min, never as minutes.

with windows as (
    select
        cast("window" as varchar) as "window",
        cast(window_minutes as integer) as window_minutes
    from time_windows
),

horizon as (
    select max(window_minutes) as minutes from windows
),

throttled_minutes as (
    select
        region,
        endpoint,
        ts,
        throttles,
        tpm,
        quota_tpm,
        rpm,
        limiting_quota
    from throttle_minutes
    where ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
),

series_minutes as (
    select
        usage_minute.region,
        usage_minute.endpoint,
        usage_minute.series_id,
        usage_minute.ts,
        60 as resolution_s,
        cast(usage_minute.throttles as bigint) as throttles,
        cast(usage_minute.tpm as bigint) as tokens,
        cast(usage_minute.quota_tpm as decimal(18, 3)) as quota_tokens,
        cast(usage_minute.invocations as bigint) as invocations,
        throttled_minutes.limiting_quota
    from usage_minute
    inner join throttled_minutes
        on
            usage_minute.region = throttled_minutes.region
            and usage_minute.endpoint = throttled_minutes.endpoint
            and usage_minute.ts = throttled_minutes.ts
    where usage_minute.resolution_s = 60
),

-- Coarse buckets in which the endpoint was throttled, per series active in them and for the endpoint.
bucket_totals as (
    select
        region,
        endpoint,
        ts,
        resolution_s
    from usage_bucket
    where
        ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
    group by region, endpoint, ts, resolution_s
    having sum(throttles) > 0
),

series_buckets as (
    select
        usage_bucket.region,
        usage_bucket.endpoint,
        usage_bucket.series_id,
        usage_bucket.ts,
        usage_bucket.resolution_s,
        usage_bucket.throttles,
        cast(null as bigint) as tokens,
        cast(null as decimal(18, 3)) as quota_tokens,
        cast(null as bigint) as invocations,
        cast(null as varchar) as limiting_quota
    from usage_bucket
    semi join bucket_totals
        on
            usage_bucket.region = bucket_totals.region
            and usage_bucket.endpoint = bucket_totals.endpoint
            and usage_bucket.ts = bucket_totals.ts
            and usage_bucket.resolution_s = bucket_totals.resolution_s
),

series_rows as (
    select * from series_minutes
    union all
    select * from series_buckets
),

minutes as (
    select * from series_rows
    union all
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        resolution_s,
        sum(throttles) as throttles,
        sum(tokens) as tokens,
        sum(quota_tokens) as quota_tokens,
        sum(invocations) as invocations,
        any_value(limiting_quota) as limiting_quota
    from series_rows
    group by region, endpoint, ts, resolution_s
),

-- Every window ends at as_of, so a minute belongs to each window at least as long as its age.
window_list as (
    select list(struct_pack("window" := "window", window_minutes := window_minutes)) as windows
    from windows
),

minute_windows as (
    select
        minutes.region,
        minutes.endpoint,
        minutes.series_id,
        minutes.resolution_s,
        minutes.throttles,
        minutes.tokens,
        minutes.quota_tokens,
        minutes.invocations,
        minutes.limiting_quota,
        -- A recursive unnest expands the struct into the columns "window" and window_minutes: no alias.
        unnest(  -- noqa: AL03
            list_filter(
                (select window_list.windows from window_list),
                lambda w: w.window_minutes >= datediff('minute', minutes.ts, getvariable('as_of'))
            ),
            recursive := true
        )
    from minutes
),

windowed as (
    select
        region,
        endpoint,
        "window",
        window_minutes,
        series_id,
        sum(throttles) as throttles,
        count(*) filter (where resolution_s = 60) as throttled_minutes,
        count(*) filter (where resolution_s = 60 and limiting_quota in ('tpm', 'tpm+rpm')) as at_tpm,
        count(*) filter (where resolution_s = 60 and limiting_quota in ('rpm', 'tpm+rpm')) as at_rpm,
        count(*) filter (where resolution_s = 300) as throttled_buckets_5min,
        coalesce(sum(tokens), 0) as tokens_in_throttled_minutes,
        coalesce(sum(quota_tokens), 0) as quota_tokens_in_throttled_minutes,
        coalesce(sum(invocations), 0) as invocations_in_throttled_minutes
    from minute_windows
    group by region, endpoint, "window", window_minutes, series_id
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast("window" as varchar) as "window",
    cast(window_minutes as integer) as window_minutes,
    cast(series_id as varchar) as series_id,
    cast(throttles as hugeint) as throttles,
    cast(throttled_minutes as integer) as throttled_minutes,
    cast(tokens_in_throttled_minutes as hugeint) as tokens_in_throttled_minutes,
    cast(
        tokens_in_throttled_minutes
        / nullif(
            sum(tokens_in_throttled_minutes) filter (where series_id = '*')
                over (partition by region, endpoint, window_minutes),
            0
        ) as double
    ) as share,
    cast(quota_tokens_in_throttled_minutes as double) as quota_tokens_in_throttled_minutes,
    cast(
        quota_tokens_in_throttled_minutes
        / nullif(
            sum(quota_tokens_in_throttled_minutes) filter (where series_id = '*')
                over (partition by region, endpoint, window_minutes),
            0
        ) as double
    ) as share_quota_tokens,
    cast(invocations_in_throttled_minutes as hugeint) as invocations_in_throttled_minutes,
    cast(
        invocations_in_throttled_minutes
        / nullif(
            sum(invocations_in_throttled_minutes) filter (where series_id = '*')
                over (partition by region, endpoint, window_minutes),
            0
        ) as double
    ) as share_invocations,
    cast(at_tpm as integer) as throttled_minutes_at_tpm,
    cast(at_rpm as integer) as throttled_minutes_at_rpm,
    cast(throttled_buckets_5min as integer) as throttled_buckets_5min,
    cast(getvariable('as_of') as timestamp) as as_of
from windowed
