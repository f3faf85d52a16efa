-- Who uses an endpoint, by caller: tokens, quota tokens, requests and peak minute per principal,
-- session, principal tag and requestMetadata key, per window, as shares of the endpoint's metrics.
-- Grain: one row per region x endpoint x window x dimension x dimension_value.
--
-- dimension is 'principal' (role/<name>, user/<name>, federated-user/<name>), 'session' (the STS
-- session name; a user's principal where there is none), 'tag:<key>' for every IAM tag key of the
-- region's callers (value '(untagged)' for a caller without it) or 'metadata:<key>' for every
-- requestMetadata key the region's callers set (value '(not set)' for requests without it). Shares are
-- of the endpoint's CloudWatch totals for the window (1-minute rows and coarse buckets, as
-- tag_attribution), not of the logs: what the logs do not cover (minutes before logging started, or
-- after the last read) is the row '(not in logs)' of each dimension, so the shares of one dimension add
-- up to 1 (its figures are negative if the logs hold minutes the metrics do not). Throttled minutes
-- (throttle_minutes) are attributed as in throttle_tag_attribution: the value's throttles, throttled
-- minutes it was active in, its tokens in them and their share of the endpoint's.

with windows as (
    select
        cast("window" as varchar) as "window",
        cast(window_minutes as integer) as window_minutes
    from time_windows
),

horizon as (
    select getvariable('as_of') - to_minutes(max(window_minutes)) as since from windows
),

callers as (
    select *
    from caller_minute
    where
        ts >= (select horizon.since from horizon)
        and ts < getvariable('as_of')
),

tag_keys as (
    select distinct
        region,
        tag_key
    from stg_principal_tags
),

metadata_keys as (
    select distinct
        region,
        unnest(json_keys(cast(request_metadata as json))) as metadata_key
    from stg_caller_minutes
    where request_metadata is not null
),

caller_values as (
    select
        region,
        endpoint,
        ts,
        'principal' as dimension,
        principal as dimension_value,
        tokens,
        quota_tokens,
        requests,
        throttles
    from callers
    union all
    select
        region,
        endpoint,
        ts,
        'session' as dimension,
        coalesce(session_name, principal) as dimension_value,
        tokens,
        quota_tokens,
        requests,
        throttles
    from callers
    union all
    select
        callers.region,
        callers.endpoint,
        callers.ts,
        'tag:' || tag_keys.tag_key as dimension,
        coalesce(tags.tag_value, '(untagged)') as dimension_value,
        callers.tokens,
        callers.quota_tokens,
        callers.requests,
        callers.throttles
    from callers
    inner join tag_keys on callers.region = tag_keys.region
    left join stg_principal_tags as tags
        on
            callers.region = tags.region
            and callers.principal = tags.principal
            and tag_keys.tag_key = tags.tag_key
    union all
    select
        callers.region,
        callers.endpoint,
        callers.ts,
        'metadata:' || metadata_keys.metadata_key as dimension,
        coalesce(
            json_extract_string(
                callers.request_metadata, '$."' || replace(metadata_keys.metadata_key, '"', '\"') || '"'
            ),
            '(not set)'
        ) as dimension_value,
        callers.tokens,
        callers.quota_tokens,
        callers.requests,
        callers.throttles
    from callers
    inner join metadata_keys on callers.region = metadata_keys.region
),

value_minutes as (
    select
        region,
        endpoint,
        dimension,
        dimension_value,
        ts,
        sum(tokens) as tokens,
        sum(quota_tokens) as quota_tokens,
        sum(requests) as requests,
        sum(throttles) as throttles
    from caller_values
    group by region, endpoint, dimension, dimension_value, ts
),

throttled as (
    select
        region,
        endpoint,
        ts
    from throttle_minutes
    where ts >= (select horizon.since from horizon)
),

value_windows as (
    select
        value_minutes.region,
        value_minutes.endpoint,
        windows."window",
        windows.window_minutes,
        value_minutes.dimension,
        value_minutes.dimension_value,
        sum(value_minutes.tokens) as tokens,
        sum(value_minutes.quota_tokens) as quota_tokens,
        sum(value_minutes.requests) as requests,
        max(value_minutes.tokens) as peak_tpm,
        count(*) as active_minutes,
        sum(value_minutes.throttles) as throttles,
        count(throttled.ts) as throttled_minutes,
        coalesce(sum(value_minutes.tokens) filter (where throttled.ts is not null), 0)
            as tokens_in_throttled_minutes
    from value_minutes
    inner join windows
        on value_minutes.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
    left join throttled
        on
            value_minutes.region = throttled.region
            and value_minutes.endpoint = throttled.endpoint
            and value_minutes.ts = throttled.ts
    group by
        value_minutes.region,
        value_minutes.endpoint,
        windows."window",
        windows.window_minutes,
        value_minutes.dimension,
        value_minutes.dimension_value
),

-- The endpoint's metrics over the window: 1-minute rows and coarse buckets, as tag_attribution counts them.
usage_rows as (
    select
        region,
        endpoint,
        ts,
        cast(tpm as bigint) as tokens,
        cast(quota_tpm as double) as quota_tokens,
        cast(invocations as bigint) as requests,
        cast(throttles as bigint) as throttles
    from usage_minute
    where
        resolution_s = 60
        and ts >= (select horizon.since from horizon)
        and ts < getvariable('as_of')
    union all
    select
        region,
        endpoint,
        ts,
        tokens,
        cast(quota_tokens as double) as quota_tokens,
        invocations as requests,
        throttles
    from usage_bucket
    where
        ts >= (select horizon.since from horizon)
        and ts < getvariable('as_of')
),

metric_windows as (
    select
        usage_rows.region,
        usage_rows.endpoint,
        windows."window",
        windows.window_minutes,
        sum(usage_rows.tokens) as tokens,
        sum(usage_rows.quota_tokens) as quota_tokens,
        sum(usage_rows.requests) as requests,
        sum(usage_rows.throttles) as throttles,
        coalesce(sum(usage_rows.tokens) filter (where throttled.ts is not null), 0)
            as tokens_in_throttled_minutes
    from usage_rows
    inner join windows
        on usage_rows.ts >= getvariable('as_of') - to_minutes(windows.window_minutes)
    left join throttled
        on
            usage_rows.region = throttled.region
            and usage_rows.endpoint = throttled.endpoint
            and usage_rows.ts = throttled.ts
    group by usage_rows.region, usage_rows.endpoint, windows."window", windows.window_minutes
),

dimensions as (
    select distinct
        region,
        dimension
    from caller_values
),

logged as (
    select
        region,
        endpoint,
        window_minutes,
        dimension,
        sum(tokens) as tokens,
        sum(quota_tokens) as quota_tokens,
        sum(requests) as requests,
        sum(throttles) as throttles,
        sum(tokens_in_throttled_minutes) as tokens_in_throttled_minutes
    from value_windows
    group by region, endpoint, window_minutes, dimension
),

remainder as (
    select
        metric_windows.region,
        metric_windows.endpoint,
        metric_windows."window",
        metric_windows.window_minutes,
        dimensions.dimension,
        '(not in logs)' as dimension_value,
        metric_windows.tokens - coalesce(logged.tokens, 0) as tokens,
        metric_windows.quota_tokens - coalesce(logged.quota_tokens, 0) as quota_tokens,
        metric_windows.requests - coalesce(logged.requests, 0) as requests,
        null as peak_tpm,
        null as active_minutes,
        metric_windows.throttles - coalesce(logged.throttles, 0) as throttles,
        null as throttled_minutes,
        metric_windows.tokens_in_throttled_minutes - coalesce(logged.tokens_in_throttled_minutes, 0)
            as tokens_in_throttled_minutes
    from metric_windows
    inner join dimensions on metric_windows.region = dimensions.region
    left join logged
        on
            metric_windows.region = logged.region
            and metric_windows.endpoint = logged.endpoint
            and metric_windows.window_minutes = logged.window_minutes
            and dimensions.dimension = logged.dimension
),

-- The remainder rows have the columns of the caller rows; by name, so the order of either list cannot matter.
attributed as (
    select * from value_windows
    union all by name
    select * from remainder
)

select
    cast(attributed.region as varchar) as region,
    cast(attributed.endpoint as varchar) as endpoint,
    cast(attributed."window" as varchar) as "window",
    cast(attributed.window_minutes as integer) as window_minutes,
    cast(attributed.dimension as varchar) as dimension,
    cast(attributed.dimension_value as varchar) as dimension_value,
    cast(attributed.dimension_value = '(not in logs)' as boolean) as is_remainder,
    cast(attributed.tokens as hugeint) as tokens,
    cast(attributed.tokens / nullif(metric_windows.tokens, 0) as double) as share,
    cast(attributed.quota_tokens as double) as quota_tokens,
    cast(attributed.quota_tokens / nullif(metric_windows.quota_tokens, 0) as double) as share_quota_tokens,
    cast(attributed.requests as hugeint) as requests,
    cast(attributed.requests / nullif(metric_windows.requests, 0) as double) as share_requests,
    cast(attributed.peak_tpm as hugeint) as peak_tpm,
    cast(attributed.active_minutes as integer) as active_minutes,
    cast(attributed.throttles as hugeint) as throttles,
    cast(attributed.throttled_minutes as integer) as throttled_minutes,
    cast(attributed.tokens_in_throttled_minutes as hugeint) as tokens_in_throttled_minutes,
    cast(
        attributed.tokens_in_throttled_minutes
        / nullif(metric_windows.tokens_in_throttled_minutes, 0) as double
    ) as share_in_throttled_minutes,
    cast(getvariable('as_of') as timestamp) as as_of
from attributed
inner join metric_windows
    on
        attributed.region = metric_windows.region
        and attributed.endpoint = metric_windows.endpoint
        and attributed.window_minutes = metric_windows.window_minutes
