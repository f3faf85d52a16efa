-- Tokens per day, two ways, per series and for the endpoint aggregate (series_id = '*'):
--   anchored days: day k (k = 0..29) holds the minutes with as_of - (k + 1) * 24 h <= ts < as_of - k * 24 h;
--   sliding days (endpoint aggregate only): the busiest 1,440-minute window (any start minute) that ends
--   inside day k, so usage that straddles an anchored day boundary is not split in two. The largest
--   sliding_tokens over an endpoint's rows is its worst 24 hours of the 30 days.
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
        cast(quota_tpm as decimal(18, 3)) as quota_tokens,
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
        cast(quota_tokens as decimal(18, 3)) as quota_tokens,
        invocations
    from usage_bucket
    where
        ts >= (select bounds.first_minute from bounds)
        and ts < getvariable('as_of')
),

-- The endpoint aggregate: endpoint_minute's 1-minute rows (already summed over the series) and the per-bucket
-- sums of the series' coarse buckets.
aggregate_rows as (
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        1 as bucket_minutes,
        60 as resolution_s,
        cast(input_tokens as bigint) as input_tokens,
        cast(output_tokens as bigint) as output_tokens,
        cast(quota_tpm as decimal(18, 3)) as quota_tokens,
        cast(invocations as bigint) as invocations
    from endpoint_minute
    where
        resolution_s = 60
        and ts >= (select bounds.first_minute from bounds)
        and ts < getvariable('as_of')
    union all
    select
        region,
        endpoint,
        '*' as series_id,
        ts,
        any_value(bucket_minutes) as bucket_minutes,
        resolution_s,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(quota_tokens) as quota_tokens,
        sum(invocations) as invocations
    from series_rows
    where resolution_s > 60
    group by region, endpoint, ts, resolution_s
),

all_rows as (
    select
        *,
        input_tokens + output_tokens as tokens
    from (
        select * from series_rows
        union all
        select * from aggregate_rows
    ) as unioned
),

-- Sliding days are computed for the endpoint aggregate, whose tokens the TPD quota counts; series rows leave
-- them null. Running totals in the order of the rows' starts: the sliding day ending at the end of a row
-- holds the rows starting at or after (its end - 1,440 minutes), so its total is the row's running total
-- minus the running total of the last row that starts before then (found by an as-of join). Rows never
-- overlap, so a bucket is inside or outside the day whole.
running as (
    select
        region,
        endpoint,
        series_id,
        start_minute,
        start_minute + bucket_minutes as end_minute,
        sum(input_tokens + output_tokens) over ordered as running_tokens,
        sum(quota_tokens) over ordered as running_quota_tokens
    from (
        select
            *,
            datediff('minute', (select bounds.first_minute from bounds), ts) as start_minute
        from aggregate_rows
    ) as aggregate_minutes
    window ordered as (
        partition by region, endpoint, series_id order by start_minute
        rows between unbounded preceding and current row
    )
),

sliding as (
    select
        running.region,
        running.endpoint,
        running.series_id,
        running.end_minute,
        running.running_tokens - coalesce(earlier.running_tokens, 0) as sliding_tokens,
        running.running_quota_tokens - coalesce(earlier.running_quota_tokens, 0) as sliding_quota_tokens
    from running
    asof left join running as earlier
        on
            running.region = earlier.region
            and running.endpoint = earlier.endpoint
            and running.series_id = earlier.series_id
            and running.end_minute - 1440 > earlier.start_minute
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
