-- Which time ranges were read from CloudWatch at which period, per region: a minute inside a covered range
-- with no datapoint was idle; a minute outside every range is unknown.
-- Grain: one row per region x account_id x period_s x [range_start, range_end); the latest fetch of a range
-- wins.
--
-- Coverage is a claim about a day's points file, so a range counts only while that file is in the lake: a day
-- whose metric_points file was deleted is not covered, whatever its coverage file says (the next run reads it
-- again). Reads narrowed to some series (`buw analyze -m`) cover those series only, not the region, and are
-- left out here; the next full run covers the region.

with source as (
    select * from raw_metric_coverage
),

points_files as (
    select distinct
        regexp_extract(file, 'region=([^/]+)/', 1) as region,
        cast(regexp_extract(file, 'date=([0-9-]+)/', 1) as date) as partition_day
    from glob(getvariable('lake_metric_points'))
),

renamed as (
    select
        cast(source.region as varchar) as region,
        cast(source.account_id as varchar) as account_id,
        cast(source.period_s as integer) as period_s,
        cast(source.range_start as timestamp) as range_start,
        cast(source.range_end as timestamp) as range_end,
        cast(source.model_ids as integer) as model_ids,
        cast(source.fetched_at as timestamp) as fetched_at
    from source
    inner join points_files
        on
            source.region = points_files.region
            and source.date = points_files.partition_day
    where
        source.range_end > source.range_start
        and source.series_ids is null
)

select * from renamed
qualify row_number() over (
    partition by region, account_id, period_s, range_start, range_end
    order by fetched_at desc
) = 1
