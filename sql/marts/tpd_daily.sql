-- Tokens per day, two ways, per series and for the endpoint aggregate (series_id = '*'):
--   anchored days: day k (k = 0..29) holds the minutes with as_of - (k + 1) * 24 h <= ts < as_of - k * 24 h;
--   sliding days: the busiest 1,440-minute window (any start minute) that ends inside day k, so usage that
--   straddles an anchored day boundary is not split in two. The largest sliding_tokens over the rows is the
--   worst 24 hours of the 30 days.
-- Grain: one row per region x endpoint x series_id x day_index with at least one active minute or bucket.
--
-- TPD = input + output tokens; quota_tokens sums quota TPM (with the output burndown). Every resolution
-- counts: 1-minute rows of usage_minute and coarse buckets of usage_bucket (a bucket belongs to the day its
-- start is in). A sliding window counts whole buckets only, so where it meets coarse data it can miss up to
-- one bucket at each edge. Counts are integer sums; quota tokens are summed as decimals: two builds agree to
-- the bit.

with bounds as (
    select getvariable('as_of') - interval 30 day as first_minute
),

series_rows as (
    select
        region,
        endpoint,
        series_id,
        ts,
        1 as bucket_minutes,
        60 as resolution_s,
        cast(input_tokens as bigint) as input_tokens,
        cast(output_tokens as bigint) as output_tokens,
        cast(quota_tpm as decimal(38, 6)) as quota_tokens,
        cast(invocations as bigint) as invocations
    from usage_minute
    where
        resolution_s = 60
        and ts >= (select bounds.first_minute from bounds)
        and ts < getvariable('as_of')
    union all
    select
        region,
        endpoint,
        series_id,
        ts,
        bucket_minutes,
        resolution_s,
        input_tokens,
        output_tokens,
        cast(quota_tokens as decimal(38, 6)) as quota_tokens,
        invocations
    from usage_bucket
    where
        ts >= (select bounds.first_minute from bounds)
        and ts < getvariable('as_of')
),

aggregate_rows as (
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        max(bucket_minutes) as bucket_minutes,
        max(resolution_s) as resolution_s,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(quota_tokens) as quota_tokens,
        sum(invocations) as invocations
    from series_rows
    group by region, endpoint, ts
),

all_rows as (
    select
        *,
        input_tokens + output_tokens as tokens,
        datediff('minute', (select bounds.first_minute from bounds), ts) as start_minute
    from (
        select * from series_rows
        union all
        select * from aggregate_rows
    ) as unioned
),

-- A window of 1,440 minutes ending at the end of each row: with rows that never overlap and are ordered by
-- their start, it holds the rows starting at most 1,440 - (the row's length) minutes before the row. One
-- frame per row length; the row picks its own.
sliding as (
    select
        region,
        endpoint,
        series_id,
        start_minute + bucket_minutes as end_minute,
        case bucket_minutes
            when 1 then sum(tokens) over one_minute_rows
            when 5 then sum(tokens) over five_minute_rows
            else sum(tokens) over hour_rows
        end as sliding_tokens,
        case bucket_minutes
            when 1 then sum(quota_tokens) over one_minute_rows
            when 5 then sum(quota_tokens) over five_minute_rows
            else sum(quota_tokens) over hour_rows
        end as sliding_quota_tokens
    from all_rows
    window
        one_minute_rows as (
            partition by region, endpoint, series_id order by start_minute
            range between 1439 preceding and current row
        ),
        five_minute_rows as (
            partition by region, endpoint, series_id order by start_minute
            range between 1435 preceding and current row
        ),
        hour_rows as (
            partition by region, endpoint, series_id order by start_minute
            range between 1380 preceding and current row
        )
),

sliding_days as (
    select
        region,
        endpoint,
        series_id,
        -- A window ending 0..1439 minutes before as_of ends in day 0, and so on.
        (30 * 1440 - end_minute) // 1440 as day_index,
        max(sliding_tokens) as sliding_tokens,
        arg_max(end_minute, sliding_tokens) as sliding_end_minute,
        max(sliding_quota_tokens) as sliding_quota_tokens
    from sliding
    group by all
),

days as (
    select
        region,
        endpoint,
        series_id,
        -- A minute 1..1440 minutes before as_of is in day 0, 1441..2880 in day 1, and so on.
        (datediff('minute', ts, getvariable('as_of')) - 1) // 1440 as day_index,
        sum(tokens) as tokens,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(quota_tokens) as quota_tokens,
        sum(invocations) as invocations,
        count(*) filter (where resolution_s = 60) as active_minutes,
        count(*) filter (where resolution_s > 60) as active_buckets,
        max(resolution_s) as resolution_s
    from all_rows
    group by region, endpoint, series_id, day_index
),

joined as (
    select
        coalesce(days.region, sliding_days.region) as region,
        coalesce(days.endpoint, sliding_days.endpoint) as endpoint,
        coalesce(days.series_id, sliding_days.series_id) as series_id,
        coalesce(days.day_index, sliding_days.day_index) as day_index,
        days.tokens,
        days.input_tokens,
        days.output_tokens,
        days.quota_tokens,
        days.invocations,
        days.active_minutes,
        days.active_buckets,
        days.resolution_s,
        sliding_days.sliding_tokens,
        sliding_days.sliding_quota_tokens,
        sliding_days.sliding_end_minute
    from days
    full join sliding_days
        on
            days.region = sliding_days.region
            and days.endpoint = sliding_days.endpoint
            and days.series_id = sliding_days.series_id
            and days.day_index = sliding_days.day_index
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast(series_id as varchar) as series_id,
    cast(day_index as integer) as day_index,
    cast(getvariable('as_of') - to_hours(24 * (day_index + 1)) as timestamp) as day_start,
    cast(getvariable('as_of') - to_hours(24 * day_index) as timestamp) as day_end,
    cast(coalesce(tokens, 0) as hugeint) as tokens,
    cast(coalesce(input_tokens, 0) as hugeint) as input_tokens,
    cast(coalesce(output_tokens, 0) as hugeint) as output_tokens,
    cast(coalesce(quota_tokens, 0) as double) as quota_tokens,
    cast(coalesce(invocations, 0) as hugeint) as invocations,
    cast(coalesce(active_minutes, 0) as integer) as active_minutes,
    cast(coalesce(active_buckets, 0) as integer) as active_buckets,
    cast(resolution_s as integer) as resolution_s,
    cast(sliding_tokens as hugeint) as sliding_tokens,
    cast(sliding_quota_tokens as double) as sliding_quota_tokens,
    cast(
        (select bounds.first_minute from bounds) + to_minutes(sliding_end_minute - 1440) as timestamp
    ) as sliding_start,
    cast((select bounds.first_minute from bounds) + to_minutes(sliding_end_minute) as timestamp)
        as sliding_end,
    cast(getvariable('as_of') as timestamp) as as_of
from joined
