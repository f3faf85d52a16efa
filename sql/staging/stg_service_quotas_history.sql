-- Every snapshot of the Service Quotas of Amazon Bedrock, with the span it was in force: the value seen at
-- valid_from held until the next snapshot of the same quota (valid_to, null for the latest one).
-- Grain: one row per region x quota_code x snapshot_at.

with source as (
    select * from raw_service_quotas
),

renamed as (
    select
        cast(region as varchar) as region,
        cast(quota_code as varchar) as quota_code,
        cast(quota_name as varchar) as quota_name,
        cast(quota_arn as varchar) as quota_arn,
        cast(value as double) as quota_value,
        cast(default_value as double) as default_value,
        cast(applied_value as double) as applied_value,
        cast(unit as varchar) as quota_unit,
        cast(adjustable as boolean) as adjustable,
        cast(global_quota as boolean) as global_quota,
        cast(snapshot_at as timestamp) as snapshot_at
    from source
),

deduplicated as (
    select * from renamed
    qualify row_number() over (partition by region, quota_code, snapshot_at order by quota_value desc) = 1
)

select
    *,
    snapshot_at as valid_from,
    lead(snapshot_at) over (partition by region, quota_code order by snapshot_at) as valid_to
from deduplicated
