-- Tags of inference profiles as last seen.
-- Grain: one row per region x profile_arn x tag_key, from the region's latest listing. Profiles and
-- their tags are listed together (same snapshot_at), so the latest profile listing says which tag
-- snapshot is current: a profile whose tags were all removed has no rows in it and is untagged, not
-- left with its older tags.

with source as (
    select * from raw_profile_tags
),

renamed as (
    select
        cast(region as varchar) as region,
        cast(profile_arn as varchar) as profile_arn,
        cast(profile_id as varchar) as profile_id,
        cast(key as varchar) as tag_key,
        cast(value as varchar) as tag_value,
        cast(snapshot_at as timestamp) as snapshot_at
    from source
),

latest_listing as (
    select
        cast(region as varchar) as region,
        max(cast(snapshot_at as timestamp)) as snapshot_at
    from raw_inference_profiles
    group by region
),

latest_snapshot as (
    select renamed.*
    from renamed
    inner join latest_listing
        on
            renamed.region = latest_listing.region
            and renamed.snapshot_at = latest_listing.snapshot_at
)

select * from latest_snapshot
qualify row_number() over (partition by region, profile_arn, tag_key order by tag_value) = 1
