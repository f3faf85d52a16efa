-- What each series did in each minute: tokens, requests, errors, latency, and the tokens its traffic burned
-- from the endpoint's tokens-per-minute quota.
-- Grain: one row per region x series_id x ts (minute start, naive UTC) with at least one datapoint; a minute
-- without a row was idle (inside the covered ranges of stg_metric_coverage) or never read (outside them).
--
-- 1-minute datapoints are used as they are. A 5-minute (or 1-hour) bucket is used only where nothing finer
-- was read: no finer coverage range overlaps it and the series has no finer datapoint inside it. Such a
-- bucket is spread evenly over its minutes (value / 5 per minute; latency averages unchanged) and marked with
-- resolution_s = 300, so totals stay exact and every row is one minute.

-- stg_metric_points is read where needed rather than through one CTE: DuckDB would materialise a CTE read
-- several times, while the filtered scans (period_s = 60, period_s > 60) are cheap.
with coverage as (
    select
        region,
        period_s,
        range_start,
        range_end
    from stg_metric_coverage
),

series as (
    select
        region,
        series_id,
        endpoint,
        base_model_id
    from endpoints
),

coarse_series as (
    select distinct
        region,
        series_id,
        period_s
    from stg_metric_points
    where period_s > 60
),

-- The coarse buckets in which a series also has finer datapoints (empty unless coarse data exist).
finer_buckets as (
    select distinct
        finer.region,
        finer.series_id,
        coarse_series.period_s,
        time_bucket(to_seconds(coarse_series.period_s), finer.ts) as bucket_start
    from stg_metric_points as finer
    inner join coarse_series
        on
            finer.region = coarse_series.region
            and finer.series_id = coarse_series.series_id
            and finer.period_s < coarse_series.period_s
),

usable_coarse as (
    select points.*
    from stg_metric_points as points
    where
        points.period_s > 60
        and not exists (
            select 1
            from coverage
            where
                coverage.region = points.region
                and coverage.period_s < points.period_s
                and coverage.range_start < points.ts + to_seconds(points.period_s)
                and coverage.range_end > points.ts
        )
        and not exists (
            select 1
            from finer_buckets
            where
                finer_buckets.region = points.region
                and finer_buckets.series_id = points.series_id
                and finer_buckets.period_s = points.period_s
                and finer_buckets.bucket_start = points.ts
        )
),

coarse_minutes as (
    select
        *,
        unnest(range(cast(period_s // 60 as bigint))) as minute_offset
    from usable_coarse
),

minutes as (
    select
        region,
        account_id,
        series_id,
        ts,
        60 as resolution_s,
        invocations,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        throttles,
        client_errors,
        server_errors,
        estimated_tpm_quota_usage,
        latency_avg_ms,
        latency_samples,
        ttft_avg_ms,
        ttft_samples
    from stg_metric_points
    where period_s = 60
    union all
    select
        region,
        account_id,
        series_id,
        ts + to_minutes(minute_offset) as ts,
        period_s as resolution_s,
        invocations / (period_s // 60) as invocations,
        input_tokens / (period_s // 60) as input_tokens,
        output_tokens / (period_s // 60) as output_tokens,
        cache_read_tokens / (period_s // 60) as cache_read_tokens,
        cache_write_tokens / (period_s // 60) as cache_write_tokens,
        throttles / (period_s // 60) as throttles,
        client_errors / (period_s // 60) as client_errors,
        server_errors / (period_s // 60) as server_errors,
        estimated_tpm_quota_usage / (period_s // 60) as estimated_tpm_quota_usage,
        latency_avg_ms,
        latency_samples / (period_s // 60) as latency_samples,
        ttft_avg_ms,
        ttft_samples / (period_s // 60) as ttft_samples
    from coarse_minutes
),

-- Burndown: of the rates whose model_id_prefix starts the base model id and whose effective_from has come,
-- the longest prefix wins, then the latest date. The choice can only change on an effective_from date, so it
-- is resolved once per (model, date) into validity intervals instead of once per minute.
models as (
    select distinct base_model_id
    from series
    where base_model_id is not null
),

rate_candidates as (
    select
        models.base_model_id,
        cast(rates.model_id_prefix as varchar) as model_id_prefix,
        cast(rates.effective_from as date) as effective_from,
        cast(rates.output_multiplier as double) as output_multiplier,
        cast(rates.cache_write_multiplier as double) as cache_write_multiplier
    from models
    inner join burndown_rates as rates
        on starts_with(models.base_model_id, cast(rates.model_id_prefix as varchar))
),

rate_changes as (
    select distinct
        base_model_id,
        effective_from as valid_from
    from rate_candidates
),

rate_intervals as (
    select
        rate_changes.base_model_id,
        rate_changes.valid_from,
        rate_candidates.output_multiplier,
        rate_candidates.cache_write_multiplier
    from rate_changes
    inner join rate_candidates
        on
            rate_changes.base_model_id = rate_candidates.base_model_id
            and rate_changes.valid_from >= rate_candidates.effective_from
    qualify row_number() over (
        partition by rate_changes.base_model_id, rate_changes.valid_from
        order by len(rate_candidates.model_id_prefix) desc, rate_candidates.effective_from desc
    ) = 1
),

rates as (
    select
        *,
        lead(valid_from) over (partition by base_model_id order by valid_from) as valid_to
    from rate_intervals
),

measured as (
    select
        minutes.region,
        minutes.account_id,
        minutes.series_id,
        coalesce(series.endpoint, minutes.series_id) as endpoint,
        minutes.ts,
        coalesce(minutes.input_tokens, 0) as input_tokens,
        coalesce(minutes.output_tokens, 0) as output_tokens,
        coalesce(minutes.cache_read_tokens, 0) as cache_read_tokens,
        coalesce(minutes.cache_write_tokens, 0) as cache_write_tokens,
        coalesce(minutes.invocations, 0) as invocations,
        coalesce(minutes.throttles, 0) as throttles,
        coalesce(minutes.client_errors, 0) as client_errors,
        coalesce(minutes.server_errors, 0) as server_errors,
        minutes.latency_avg_ms as latency_ms,
        -- CloudWatch's SampleCount is the weight of an average; invocations stand in when it was not
        -- fetched.
        case
            when minutes.latency_avg_ms is not null
                then coalesce(minutes.latency_samples, minutes.invocations)
        end as latency_samples,
        minutes.ttft_avg_ms as ttft_ms,
        case
            when minutes.ttft_avg_ms is not null then coalesce(minutes.ttft_samples, minutes.invocations)
        end as ttft_samples,
        minutes.estimated_tpm_quota_usage,
        coalesce(rates.output_multiplier, 1) as output_multiplier,
        coalesce(rates.cache_write_multiplier, 1) as cache_write_multiplier,
        minutes.resolution_s
    from minutes
    left join series
        on
            minutes.region = series.region
            and minutes.series_id = series.series_id
    left join rates
        on
            series.base_model_id = rates.base_model_id
            and minutes.ts >= rates.valid_from
            and (rates.valid_to is null or minutes.ts < rates.valid_to)
)

select
    cast(region as varchar) as region,
    cast(account_id as varchar) as account_id,
    cast(series_id as varchar) as series_id,
    cast(endpoint as varchar) as endpoint,
    cast(ts as timestamp) as ts,
    cast(input_tokens as double) as input_tokens,
    cast(output_tokens as double) as output_tokens,
    cast(cache_read_tokens as double) as cache_read_tokens,
    cast(cache_write_tokens as double) as cache_write_tokens,
    cast(invocations as double) as invocations,
    cast(throttles as double) as throttles,
    cast(client_errors as double) as client_errors,
    cast(server_errors as double) as server_errors,
    cast(latency_ms as double) as latency_ms,
    cast(latency_samples as double) as latency_samples,
    cast(ttft_ms as double) as ttft_ms,
    cast(ttft_samples as double) as ttft_samples,
    cast(input_tokens + output_tokens as double) as tpm,
    cast(invocations as double) as rpm,
    cast(
        input_tokens
        + cache_write_tokens * cache_write_multiplier
        + output_tokens * output_multiplier as double
    ) as quota_tpm_computed,
    cast(estimated_tpm_quota_usage as double) as estimated_tpm_quota_usage,
    cast(
        coalesce(
            estimated_tpm_quota_usage,
            input_tokens + cache_write_tokens * cache_write_multiplier + output_tokens * output_multiplier
        ) as double
    ) as quota_tpm,
    cast(resolution_s as integer) as resolution_s
from measured
