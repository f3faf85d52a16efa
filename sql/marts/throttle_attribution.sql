-- Who was using an endpoint hardest when it was throttled, per window.
-- Grain: one row per region x endpoint x window x series_id ('*' = the endpoint as a whole), for endpoints
-- with at least one throttled minute in the window.
--
-- Throttled minutes are the endpoint's minutes with InvocationThrottles > 0 summed over its series. For each
-- series: its throttles, how many of those minutes it was active in, its tokens (input + output) in them and
-- its share of all the endpoint's tokens in them.

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
        invocations
    from endpoint_minute
    where
        throttles > 0
        and ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
),

series_minutes as (
    select
        usage_minute.region,
        usage_minute.endpoint,
        usage_minute.series_id,
        usage_minute.ts,
        usage_minute.throttles,
        usage_minute.tpm,
        usage_minute.quota_tpm,
        usage_minute.invocations
    from usage_minute
    semi join throttled_minutes
        on
            usage_minute.region = throttled_minutes.region
            and usage_minute.endpoint = throttled_minutes.endpoint
            and usage_minute.ts = throttled_minutes.ts
),

minutes as (
    select * from series_minutes
    union all
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        throttles,
        tpm,
        quota_tpm,
        invocations
    from throttled_minutes
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
        minutes.throttles,
        minutes.tpm,
        minutes.quota_tpm,
        minutes.invocations,
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
        count(*) as throttled_minutes,
        sum(tpm) as tokens_in_throttled_minutes,
        sum(quota_tpm) as quota_tokens_in_throttled_minutes,
        sum(invocations) as invocations_in_throttled_minutes
    from minute_windows
    group by region, endpoint, "window", window_minutes, series_id
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast("window" as varchar) as "window",
    cast(series_id as varchar) as series_id,
    cast(throttles as double) as throttles,
    cast(throttled_minutes as integer) as throttled_minutes,
    cast(tokens_in_throttled_minutes as double) as tokens_in_throttled_minutes,
    cast(
        tokens_in_throttled_minutes
        / nullif(
            sum(tokens_in_throttled_minutes) filter (where series_id = '*')
                over (partition by region, endpoint, window_minutes),
            0
        ) as double
    ) as share,
    cast(quota_tokens_in_throttled_minutes as double) as quota_tokens_in_throttled_minutes,
    cast(invocations_in_throttled_minutes as double) as invocations_in_throttled_minutes,
    cast(getvariable('as_of') as timestamp) as as_of
from windowed
