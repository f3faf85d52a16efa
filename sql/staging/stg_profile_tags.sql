-- Tags of inference profiles as last seen.
-- Grain: one row per region x profile_arn x tag_key, from the profile's latest tag snapshot (a tag removed
-- since an earlier snapshot is gone).

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

latest_snapshot as (
    select * from renamed
    qualify snapshot_at = max(snapshot_at) over (partition by region, profile_arn)
)

select * from latest_snapshot
qualify row_number() over (partition by region, profile_arn, tag_key order by tag_value) = 1
