-- Foundation models offered in each region, as last seen.
-- Grain: one row per region x model_id.

with source as (
    select * from raw_foundation_models
),

renamed as (
    select
        cast(region as varchar) as region,
        cast(model_id as varchar) as model_id,
        cast(model_arn as varchar) as model_arn,
        cast(model_name as varchar) as model_name,
        cast(provider as varchar) as provider_name,
        cast(input_modalities as varchar[]) as input_modalities,
        cast(output_modalities as varchar[]) as output_modalities,
        cast(inference_types as varchar[]) as inference_types,
        cast(response_streaming as boolean) as response_streaming,
        cast(lifecycle_status as varchar) as lifecycle_status,
        cast(snapshot_at as timestamp) as snapshot_at
    from source
)

select * from renamed
qualify row_number() over (partition by region, model_id order by snapshot_at desc) = 1
