-- Which time ranges were read from CloudWatch at which period, per region: a minute inside a covered range
-- with no datapoint was idle; a minute outside every range is unknown.
-- Grain: one row per region x account_id x period_s x [range_start, range_end); the latest fetch of a range
-- wins.

with source as (
    select * from raw_metric_coverage
),

renamed as (
    select
        cast(region as varchar) as region,
        cast(account_id as varchar) as account_id,
        cast(period_s as integer) as period_s,
        cast(range_start as timestamp) as range_start,
        cast(range_end as timestamp) as range_end,
        cast(model_ids as integer) as model_ids,
        cast(fetched_at as timestamp) as fetched_at
    from source
    where range_end > range_start
)

select * from renamed
qualify row_number() over (
    partition by region, account_id, period_s, range_start, range_end
    order by fetched_at desc
) = 1
