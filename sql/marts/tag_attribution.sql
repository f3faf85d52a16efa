-- Who uses an endpoint: tokens, share and peak TPM by tag key and value of its application profiles, per
-- window.
-- Grain: one row per region x endpoint x window x tag_key x tag_value.
--
-- For each tag key found on any application profile of the endpoint, every series of the endpoint gets one
-- value: the profile's value for that key, '(untagged)' for an application profile without the key, and
-- '(direct)' for traffic straight on the system profile or base model. The shares of one key therefore add up
-- to 1. Tags are the profiles' latest known tags, applied to the whole window.

with windows as (
    select
        cast("window" as varchar) as "window",
        cast(window_minutes as integer) as window_minutes
    from time_windows
),

horizon as (
    select max(window_minutes) as minutes from windows
),

assignments as (
    select * from tag_assignments
),

-- One small integer per (endpoint, tag key, tag value): the per-minute sums below group millions of rows, and
-- grouping on an integer is much cheaper than on four strings.
distinct_groups as (
    select distinct
        region,
        endpoint,
        tag_key,
        tag_value
    from assignments
),

tag_groups as (
    select
        region,
        endpoint,
        tag_key,
        tag_value,
        row_number() over (order by region, endpoint, tag_key, tag_value) as group_id
    from distinct_groups
),

series_groups as (
    select
        assignments.region,
        assignments.series_id,
        tag_groups.group_id
    from assignments
    inner join tag_groups
        on
            assignments.region = tag_groups.region
            and assignments.endpoint = tag_groups.endpoint
            and assignments.tag_key = tag_groups.tag_key
            and assignments.tag_value = tag_groups.tag_value
),

group_minutes as (
    select
        series_groups.group_id,
        usage_minute.ts,
        sum(usage_minute.tpm) as tokens,
        sum(usage_minute.quota_tpm) as quota_tokens,
        sum(usage_minute.invocations) as invocations
    from usage_minute
    inner join series_groups
        on
            usage_minute.region = series_groups.region
            and usage_minute.series_id = series_groups.series_id
    where
        usage_minute.ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and usage_minute.ts < getvariable('as_of')
    group by series_groups.group_id, usage_minute.ts
),

-- Every window ends at as_of, so a minute belongs to each window at least as long as its age.
window_list as (
    select list(struct_pack("window" := "window", window_minutes := window_minutes)) as windows
    from windows
),

group_windows as (
    select
        group_minutes.group_id,
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
        group_id,
        "window",
        window_minutes,
        sum(tokens) as tokens,
        sum(quota_tokens) as quota_tokens,
        sum(invocations) as invocations,
        max(tokens) as peak_tpm,
        count(*) as active_minutes
    from group_windows
    group by group_id, "window", window_minutes
),

attributed as (
    select
        tag_groups.region,
        tag_groups.endpoint,
        windowed."window",
        windowed.window_minutes,
        tag_groups.tag_key,
        tag_groups.tag_value,
        windowed.tokens,
        windowed.quota_tokens,
        windowed.invocations,
        windowed.peak_tpm,
        windowed.active_minutes
    from windowed
    inner join tag_groups on windowed.group_id = tag_groups.group_id
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast("window" as varchar) as "window",
    cast(tag_key as varchar) as tag_key,
    cast(tag_value as varchar) as tag_value,
    cast(tokens as double) as tokens,
    cast(
        -- window_minutes identifies the window as well as its name does.
        tokens
        / nullif(sum(tokens) over (partition by region, endpoint, window_minutes, tag_key), 0) as double
    ) as share,
    cast(invocations as double) as invocations,
    cast(peak_tpm as double) as peak_tpm,
    cast(quota_tokens as double) as quota_tokens,
    cast(active_minutes as integer) as active_minutes,
    cast(getvariable('as_of') as timestamp) as as_of
from attributed
