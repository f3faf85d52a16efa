-- Tags of inference profiles as last seen.
-- Grain: one row per region x profile_arn x tag_key, from the last listing of the region that still contained
-- the profile. Profiles and their tags are listed together (same snapshot_at), so that listing says which tag
-- snapshot is the profile's: a profile whose tags were all removed has no rows in it and is untagged, not
-- left with its older tags, and a profile deleted since keeps the tags it had when last listed, so its
-- history stays attributed to them.

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

last_listing as (
    select
        cast(region as varchar) as region,
        cast(profile_arn as varchar) as profile_arn,
        max(cast(snapshot_at as timestamp)) as snapshot_at
    from raw_inference_profiles
    group by all
),

last_snapshot as (
    select renamed.*
    from renamed
    inner join last_listing
        on
            renamed.region = last_listing.region
            and renamed.profile_arn = last_listing.profile_arn
            and renamed.snapshot_at = last_listing.snapshot_at
)

select * from last_snapshot
qualify row_number() over (partition by region, profile_arn, tag_key order by tag_value) = 1
