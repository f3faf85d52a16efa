-- What each extraction run read from CloudWatch per region and what it cost: GetMetricData is billed per
-- metric requested in every call, so metrics_requested is the bill and estimated_cost_usd its price at the
-- dated rate.
-- Grain: one row per extraction run x region.

with source as (
    select * from raw_extract_run_log
),

renamed as (
    select
        cast(run_id as varchar) as run_id,
        cast(region as varchar) as region,
        cast(account_id as varchar) as account_id,
        cast(recorded_at as timestamp) as recorded_at,
        cast(as_of as timestamp) as as_of,
        cast(range_start as timestamp) as range_start,
        cast(range_end as timestamp) as range_end,
        cast(listing as varchar) as listing,
        cast(narrowed as boolean) as narrowed,
        cast(series as integer) as series,
        cast(queries as integer) as queries,
        cast(calls as bigint) as calls,
        cast(metrics_requested as bigint) as metrics_requested,
        cast(datapoints as bigint) as datapoints,
        cast(days_written as integer) as days_written,
        cast(estimated_cost_usd as double) as estimated_cost_usd,
        cast(usd_per_1000_metrics as double) as usd_per_1000_metrics,
        cast(price_as_of as date) as price_as_of
    from source
    where run_id is not null
)

select * from renamed
