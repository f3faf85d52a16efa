-- Which projects or teams (profile tags) were using an endpoint when it was throttled, per window.
-- Grain: one row per region x endpoint x window x tag_key x tag_value, for endpoints with at least one
-- throttled minute in the window and a tag key on at least one of their application profiles.
--
-- Throttled minutes are the endpoint's 1-minute rows with InvocationThrottles > 0 summed over its series
-- (throttle_minutes, as in throttle_attribution). Each series belongs to one tag group per key
-- (tag_assignments); per group: its throttles in those minutes, the throttled minutes it was active in, its
-- tokens (input + output), quota tokens and requests in them, and its shares of the endpoint's. The shares of
-- one key add up to 1.

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
        ts
    from throttle_minutes
    where ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
),

group_minutes as (
    select
        tag_assignments.region,
        tag_assignments.endpoint,
        tag_assignments.tag_key,
        tag_assignments.tag_value,
        usage_minute.ts,
        sum(cast(usage_minute.throttles as bigint)) as throttles,
        sum(cast(usage_minute.tpm as bigint)) as tokens,
        sum(cast(usage_minute.quota_tpm as decimal(18, 3))) as quota_tokens,
        sum(cast(usage_minute.invocations as bigint)) as invocations
    from usage_minute
    semi join throttled_minutes
        on
            usage_minute.region = throttled_minutes.region
            and usage_minute.endpoint = throttled_minutes.endpoint
            and usage_minute.ts = throttled_minutes.ts
    inner join tag_assignments
        on
            usage_minute.region = tag_assignments.region
            and usage_minute.series_id = tag_assignments.series_id
    where usage_minute.resolution_s = 60
    group by
        tag_assignments.region,
        tag_assignments.endpoint,
        tag_assignments.tag_key,
        tag_assignments.tag_value,
        usage_minute.ts
),

-- Every window ends at as_of, so a minute belongs to each window at least as long as its age.
window_list as (
    select list(struct_pack("window" := "window", window_minutes := window_minutes)) as windows
    from windows
),

group_windows as (
    select
        group_minutes.region,
        group_minutes.endpoint,
        group_minutes.tag_key,
        group_minutes.tag_value,
        group_minutes.throttles,
        group_minutes.tokens,
        group_minutes.quota_tokens,
        group_minutes.invocations,
        -- A recursive unnest expands the struct into the columns "window" and window_minutes: no alias.
        unnest(  -- noqa: AL03
            list_filter(
                (select window_list.windows from window_list),
                lambda w: w.window_minutes >= datediff('minute', group_minutes.ts, getvariable('as_of'))
            ),
            recursive := true
        )
    from group_minutes
),

windowed as (
    select
        region,
        endpoint,
        "window",
        window_minutes,
        tag_key,
        tag_value,
        sum(throttles) as throttles,
        count(*) as throttled_minutes,
        sum(tokens) as tokens_in_throttled_minutes,
        sum(quota_tokens) as quota_tokens_in_throttled_minutes,
        sum(invocations) as invocations_in_throttled_minutes
    from group_windows
    group by region, endpoint, "window", window_minutes, tag_key, tag_value
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast("window" as varchar) as "window",
    cast(window_minutes as integer) as window_minutes,
    cast(tag_key as varchar) as tag_key,
    cast(tag_value as varchar) as tag_value,
    cast(throttles as hugeint) as throttles,
    cast(throttled_minutes as integer) as throttled_minutes,
    cast(tokens_in_throttled_minutes as hugeint) as tokens_in_throttled_minutes,
    cast(
        tokens_in_throttled_minutes
        / nullif(
            sum(tokens_in_throttled_minutes) over (partition by region, endpoint, window_minutes, tag_key),
            0
        ) as double
    ) as share,
    cast(quota_tokens_in_throttled_minutes as double) as quota_tokens_in_throttled_minutes,
    cast(
        quota_tokens_in_throttled_minutes
        / nullif(
            sum(quota_tokens_in_throttled_minutes)
                over (partition by region, endpoint, window_minutes, tag_key),
            0
        ) as double
    ) as share_quota_tokens,
    cast(invocations_in_throttled_minutes as hugeint) as invocations_in_throttled_minutes,
    cast(
        invocations_in_throttled_minutes
        / nullif(
            sum(invocations_in_throttled_minutes)
                over (partition by region, endpoint, window_minutes, tag_key),
            0
        ) as double
    ) as share_invocations,
    cast(getvariable('as_of') as timestamp) as as_of
from windowed
