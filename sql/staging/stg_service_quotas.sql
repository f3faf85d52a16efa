-- Service Quotas of Amazon Bedrock, as last seen.
-- Grain: one row per region x quota_code (the latest snapshot of each quota).

with source as (
    select * from stg_service_quotas_history
)

select
    region,
    quota_code,
    quota_name,
    quota_arn,
    quota_value,
    default_value,
    applied_value,
    quota_unit,
    adjustable,
    global_quota,
    snapshot_at
from source
where valid_to is null
