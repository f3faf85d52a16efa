-- Which tag group each series of an endpoint belongs to, per tag key: the shared basis of tag_attribution and
-- throttle_tag_attribution.
-- Grain: one row per region x endpoint x series_id x tag_key.
--
-- For each tag key found on any application profile of the endpoint, every series of the endpoint gets one
-- value: the profile's value for that key, '(untagged)' for an application profile without the key, and
-- '(direct)' for traffic straight on the system profile or base model, so the groups of one key partition the
-- endpoint's traffic. Tags are the profiles' latest known tags.

with series as (
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
        series.endpoint,
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
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast(series_id as varchar) as series_id,
    cast(tag_key as varchar) as tag_key,
    cast(tag_value as varchar) as tag_value
from assignments
