-- The tokens-per-minute and tokens-per-day burndown of each base model the warehouse has traffic for, as
-- validity intervals, and whether a model that Bedrock burns down has no rate in the seed.
-- Grain: one row per region x base_model_id x valid_from (one row with valid_from null for a model the seed
-- has no rate for).
--
-- Of the rates whose model_id_prefix starts the base model id and whose effective_from has come, the longest
-- prefix wins, then the latest date. The choice can only change on an effective_from date, so it is resolved
-- once per (model, date) into intervals instead of once per minute. Anthropic's Claude 3.7 and Claude 4 (and
-- later) families count output tokens more than once; such a model without any seed row is flagged
-- (missing_burndown) instead of silently counting 1x.

with models as (
    select distinct
        region,
        base_model_id
    from endpoints
    where base_model_id is not null
),

rate_candidates as (
    select
        models.region,
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
        region,
        base_model_id,
        effective_from as valid_from
    from rate_candidates
),

rate_intervals as (
    select
        rate_changes.region,
        rate_changes.base_model_id,
        rate_changes.valid_from,
        rate_candidates.model_id_prefix,
        rate_candidates.output_multiplier,
        rate_candidates.cache_write_multiplier
    from rate_changes
    inner join rate_candidates
        on
            rate_changes.region = rate_candidates.region
            and rate_changes.base_model_id = rate_candidates.base_model_id
            and rate_changes.valid_from >= rate_candidates.effective_from
    qualify row_number() over (
        partition by rate_changes.region, rate_changes.base_model_id, rate_changes.valid_from
        order by len(rate_candidates.model_id_prefix) desc, rate_candidates.effective_from desc
    ) = 1
),

unrated as (
    select
        models.region,
        models.base_model_id,
        cast(null as date) as valid_from,
        cast(null as varchar) as model_id_prefix,
        cast(1 as double) as output_multiplier,
        cast(1 as double) as cache_write_multiplier
    from models
    anti join rate_candidates
        on
            models.region = rate_candidates.region
            and models.base_model_id = rate_candidates.base_model_id
),

intervals as (
    select * from rate_intervals
    union all
    select * from unrated
)

select
    cast(region as varchar) as region,
    cast(base_model_id as varchar) as base_model_id,
    cast(valid_from as timestamp) as valid_from,
    cast(
        lead(valid_from) over (partition by region, base_model_id order by valid_from) as timestamp
    ) as valid_to,
    cast(model_id_prefix as varchar) as model_id_prefix,
    cast(output_multiplier as double) as output_multiplier,
    cast(cache_write_multiplier as double) as cache_write_multiplier,
    -- Claude 3.7 Sonnet and the Claude 4 families (Sonnet/Opus/Haiku 4, 4.1, 4.5 and later) burn output
    -- tokens down at more than 1x; a model id of those families with no seed row is a gap in the seed.
    cast(
        model_id_prefix is null
        and regexp_matches(
            base_model_id,
            '^anthropic\.claude-(3-7-|(sonnet|opus|haiku)-([4-9]|[1-9][0-9])|[4-9]-|[1-9][0-9]-)'
        ) as boolean
    ) as missing_burndown
from intervals
