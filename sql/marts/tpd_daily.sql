-- Tokens per day over rolling 24-hour days ending at as_of: day k (k = 0..29) holds the minutes with as_of -
-- (k + 1) * 24 h <= ts < as_of - k * 24 h. TPD = input + output tokens, per series and for the endpoint
-- aggregate (series_id = '*').
-- Grain: one row per region x endpoint x series_id x day_index with at least one active minute.

with series_minutes as (
    select
        region,
        endpoint,
        series_id,
        ts,
        input_tokens,
        output_tokens,
        quota_tpm,
        invocations,
        resolution_s
    from usage_minute
    where
        ts >= getvariable('as_of') - interval 30 day
        and ts < getvariable('as_of')
),

aggregate_minutes as (
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        input_tokens,
        output_tokens,
        quota_tpm,
        invocations,
        resolution_s
    from endpoint_minute
    where
        ts >= getvariable('as_of') - interval 30 day
        and ts < getvariable('as_of')
),

minutes as (
    select * from series_minutes
    union all
    select * from aggregate_minutes
),

days as (
    select
        region,
        endpoint,
        series_id,
        -- A minute 1..1440 minutes before as_of is in day 0, 1441..2880 in day 1, and so on.
        (datediff('minute', ts, getvariable('as_of')) - 1) // 1440 as day_index,
        sum(input_tokens + output_tokens) as tokens,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(quota_tpm) as quota_tokens,
        sum(invocations) as invocations,
        count(*) as active_minutes,
        max(resolution_s) as resolution_s
    from minutes
    group by region, endpoint, series_id, day_index
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast(series_id as varchar) as series_id,
    cast(day_index as integer) as day_index,
    cast(getvariable('as_of') - to_hours(24 * (day_index + 1)) as timestamp) as day_start,
    cast(getvariable('as_of') - to_hours(24 * day_index) as timestamp) as day_end,
    cast(tokens as double) as tokens,
    cast(input_tokens as double) as input_tokens,
    cast(output_tokens as double) as output_tokens,
    cast(quota_tokens as double) as quota_tokens,
    cast(invocations as double) as invocations,
    cast(active_minutes as integer) as active_minutes,
    cast(resolution_s as integer) as resolution_s,
    cast(getvariable('as_of') as timestamp) as as_of
from days
