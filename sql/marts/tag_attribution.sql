-- Who uses an endpoint: tokens, share and peak TPM by tag key and value of its application profiles, per
-- window.
-- Grain: one row per region x endpoint x window x tag_key x tag_value.
--
-- For each tag key found on any application profile of the endpoint, every series of the endpoint gets one
-- value: the profile's value for that key, '(untagged)' for an application profile without the key, and
-- '(direct)' for traffic straight on the system profile or base model. The shares of one key therefore add up
-- to 1. Tags are the tags each profile had in the last listing that still contained it, applied to the whole
-- window. tokens, quota_tokens and invocations count every resolution (1-minute rows and coarse buckets that
-- start in the window); peak_tpm and active_minutes are over 1-minute data only, and the busiest 5-minute
-- bucket gives the bracket peak_tpm_5min <= busiest minute <= peak_tpm_bound_5min.

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

-- 1-minute rows and coarse buckets, each with its length: tokens count at every resolution, the peak minute
-- only where minutes were measured.
usage_rows as (
    select
        region,
        series_id,
        ts,
        60 as resolution_s,
        cast(tpm as bigint) as tokens,
        cast(quota_tpm as decimal(18, 3)) as quota_tokens,
        cast(invocations as bigint) as invocations
    from usage_minute
    where
        resolution_s = 60
        and ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
    union all
    select
        region,
        series_id,
        ts,
        resolution_s,
        tokens,
        cast(quota_tokens as decimal(18, 3)) as quota_tokens,
        invocations
    from usage_bucket
    where
        ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and ts < getvariable('as_of')
),

group_minutes as (
    select
        series_groups.group_id,
        usage_rows.ts,
        usage_rows.resolution_s,
        sum(usage_rows.tokens) as tokens,
        sum(usage_rows.quota_tokens) as quota_tokens,
        sum(usage_rows.invocations) as invocations
    from usage_rows
    inner join series_groups
        on
            usage_rows.region = series_groups.region
            and usage_rows.series_id = series_groups.series_id
    group by series_groups.group_id, usage_rows.ts, usage_rows.resolution_s
),

-- Every window ends at as_of, so a minute belongs to each window at least as long as its age.
window_list as (
    select list(struct_pack("window" := "window", window_minutes := window_minutes)) as windows
    from windows
),

group_windows as (
    select
        group_minutes.group_id,
        group_minutes.resolution_s,
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
        max(tokens) filter (where resolution_s = 60) as peak_tpm,
        count(*) filter (where resolution_s = 60) as active_minutes,
        count(*) filter (where resolution_s = 300) as active_buckets_5min,
        max(tokens) filter (where resolution_s = 300) as peak_bucket_5min
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
        windowed.active_minutes,
        windowed.active_buckets_5min,
        windowed.peak_bucket_5min
    from windowed
    inner join tag_groups on windowed.group_id = tag_groups.group_id
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast("window" as varchar) as "window",
    cast(window_minutes as integer) as window_minutes,
    cast(tag_key as varchar) as tag_key,
    cast(tag_value as varchar) as tag_value,
    cast(tokens as hugeint) as tokens,
    cast(
        -- window_minutes identifies the window as well as its name does.
        tokens
        / nullif(sum(tokens) over (partition by region, endpoint, window_minutes, tag_key), 0) as double
    ) as share,
    cast(invocations as hugeint) as invocations,
    cast(peak_tpm as hugeint) as peak_tpm,
    cast(quota_tokens as double) as quota_tokens,
    cast(active_minutes as integer) as active_minutes,
    cast(active_buckets_5min as integer) as active_buckets_5min,
    -- The busiest 5-minute bucket brackets the busiest minute in it: sum / 5 <= that minute <= sum.
    cast(peak_bucket_5min / 5 as double) as peak_tpm_5min,
    cast(peak_bucket_5min as hugeint) as peak_tpm_bound_5min,
    cast(getvariable('as_of') as timestamp) as as_of
from attributed
