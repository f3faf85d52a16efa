-- IAM tags of the principals that call Bedrock, as last listed.
-- Grain: one row per region x principal x tag_key, from the principal's last listing in the region; a
-- principal listed without tags has no row.

with source as (
    select * from raw_principal_tags
),

renamed as (
    select
        cast(region as varchar) as region,
        cast(principal as varchar) as principal,
        cast(key as varchar) as tag_key,
        cast(value as varchar) as tag_value,
        cast(snapshot_at as timestamp) as snapshot_at
    from source
),

last_listing as (
    select
        region,
        principal,
        max(snapshot_at) as snapshot_at
    from renamed
    group by region, principal
)

select renamed.*
from renamed
inner join last_listing
    on
        renamed.region = last_listing.region
        and renamed.principal = last_listing.principal
        and renamed.snapshot_at = last_listing.snapshot_at
where renamed.tag_key is not null
qualify
    row_number()
        over (partition by renamed.region, renamed.principal, renamed.tag_key order by renamed.tag_value)
    = 1
