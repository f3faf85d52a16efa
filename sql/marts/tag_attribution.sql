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

series as (
    select
        region,
        endpoint,
        series_id,
        is_application_profile,
        profile_arn
    from endpoints
),

series_tags as (
    select
        series.region,
        series.series_id,
        tags.tag_key,
        tags.tag_value
    from series
    inner join stg_profile_tags as tags
        on
            series.region = tags.region
            and series.profile_arn = tags.profile_arn
    where series.is_application_profile
),

endpoint_keys as (
    select distinct
        series.region,
        series.endpoint,
        series_tags.tag_key
    from series_tags
    inner join series
        on
            series_tags.region = series.region
            and series_tags.series_id = series.series_id
),

assignments as (
    select
        series.region,
        series.series_id,
        endpoint_keys.tag_key,
        case
            when not series.is_application_profile then '(direct)'
            else coalesce(series_tags.tag_value, '(untagged)')
        end as tag_value
    from endpoint_keys
    inner join series
        on
            endpoint_keys.region = series.region
            and endpoint_keys.endpoint = series.endpoint
    left join series_tags
        on
            series.region = series_tags.region
            and series.series_id = series_tags.series_id
            and endpoint_keys.tag_key = series_tags.tag_key
),

group_minutes as (
    select
        usage_minute.region,
        usage_minute.endpoint,
        assignments.tag_key,
        assignments.tag_value,
        usage_minute.ts,
        sum(usage_minute.tpm) as tokens,
        sum(usage_minute.quota_tpm) as quota_tokens,
        sum(usage_minute.invocations) as invocations
    from usage_minute
    inner join assignments
        on
            usage_minute.region = assignments.region
            and usage_minute.series_id = assignments.series_id
    where
        usage_minute.ts >= getvariable('as_of') - to_minutes((select horizon.minutes from horizon))
        and usage_minute.ts < getvariable('as_of')
    group by
        usage_minute.region,
        usage_minute.endpoint,
        assignments.tag_key,
        assignments.tag_value,
        usage_minute.ts
),

windowed as (
    select
        group_minutes.region,
        group_minutes.endpoint,
        windows."window",
        windows.window_minutes,
        group_minutes.tag_key,
        group_minutes.tag_value,
        sum(group_minutes.tokens) as tokens,
        sum(group_minutes.quota_tokens) as quota_tokens,
        sum(group_minutes.invocations) as invocations,
        max(group_minutes.tokens) as peak_tpm,
        count(*) as active_minutes
    from group_minutes
    inner join windows
        on group_minutes.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
    group by
        group_minutes.region,
        group_minutes.endpoint,
        windows."window",
        windows.window_minutes,
        group_minutes.tag_key,
        group_minutes.tag_value
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
from windowed
