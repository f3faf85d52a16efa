-- Inference profiles (system and application) as last seen, per region.
-- Grain: one row per region x profile_id: the profile's latest snapshot. Profiles deleted since keep their
-- last known record (their metric history still needs an endpoint); is_current tells whether the profile was
-- in the region's latest snapshot.

with source as (
    select * from raw_inference_profiles
),

renamed as (
    select
        cast(region as varchar) as region,
        cast(account_id as varchar) as account_id,
        cast(profile_id as varchar) as profile_id,
        cast(profile_arn as varchar) as profile_arn,
        cast(name as varchar) as profile_name,
        cast(description as varchar) as description,
        -- The API says SYSTEM_DEFINED, the lake contract SYSTEM: either way it is SYSTEM here.
        cast(
            case when upper(type) = 'SYSTEM_DEFINED' then 'SYSTEM' else upper(type) end as varchar
        ) as profile_type,
        cast(upper(status) as varchar) as status,
        -- Sorted and de-duplicated so that two profiles with the same models compare equal.
        cast(list_sort(list_distinct(model_arns)) as varchar[]) as model_arns,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(snapshot_at as timestamp) as snapshot_at
    from source
),

latest as (
    select * from renamed
    qualify row_number() over (partition by region, profile_id order by snapshot_at desc) = 1
)

select
    *,
    snapshot_at = max(snapshot_at) over (partition by region) as is_current
from latest
