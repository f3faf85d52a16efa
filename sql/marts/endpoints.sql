-- Every CloudWatch series and every inference profile, with the endpoint it belongs to: the base model,
-- geographic cross-region profile or global profile whose quotas its traffic counts against.
-- Grain: one row per region x series_id (the CloudWatch ModelId; an application profile's short profile id).
--
-- An application profile belongs to the system profile it was copied from, found by comparing model ARN sets
-- (set equality), never by name: a geographic profile's ARN set contains the home region's foundation-model
-- ARN, so a subset test would wrongly match the base model. A profile with a single foundation-model ARN was
-- copied from that base model.

with profiles as (
    select * from stg_inference_profiles
),

metric_series as (
    select
        region,
        series_id,
        any_value(account_id) as account_id,
        min(ts) as first_ts,
        max(ts) as last_ts
    from stg_metric_points
    group by region, series_id
),

profile_arns as (
    select
        region,
        profile_id,
        unnest(model_arns) as model_arn
    from profiles
),

profile_models as (
    select
        region,
        profile_id,
        min(regexp_extract(model_arn, 'foundation-model/(.+)$', 1)) as base_model_id
    from profile_arns
    where model_arn like '%:foundation-model/%'
    group by region, profile_id
),

system_profiles as (
    select
        region,
        profile_id,
        model_arns,
        case when profile_id like 'global.%' then 'global' else 'geo' end as endpoint_kind
    from profiles
    where profile_type = 'SYSTEM'
),

arn_set_matches as (
    select
        app.region,
        app.profile_id,
        -- Two system profiles with the same ARN set are not expected; min() keeps the choice reproducible.
        min(sys.profile_id) as system_profile_id
    from profiles as app
    inner join system_profiles as sys
        on
            app.region = sys.region
            and app.model_arns = sys.model_arns
    where app.profile_type = 'APPLICATION'
    group by app.region, app.profile_id
),

profile_endpoints as (
    select
        profiles.region,
        profiles.account_id,
        profiles.profile_id,
        profiles.profile_arn,
        profiles.profile_name,
        profiles.profile_type,
        profiles.status,
        profiles.is_current,
        profiles.model_arns,
        profile_models.base_model_id,
        case
            when profiles.profile_type = 'SYSTEM' then profiles.profile_id
            when arn_set_matches.system_profile_id is not null then arn_set_matches.system_profile_id
            when
                len(profiles.model_arns) = 1 and profile_models.base_model_id is not null
                then profile_models.base_model_id
            else profiles.profile_id
        end as endpoint,
        case
            when profiles.profile_type = 'SYSTEM' then 'system_profile'
            when arn_set_matches.system_profile_id is not null then 'arn_set'
            when
                len(profiles.model_arns) = 1 and profile_models.base_model_id is not null
                then 'single_model_arn'
            else 'unmapped'
        end as mapped_by
    from profiles
    left join arn_set_matches
        on
            profiles.region = arn_set_matches.region
            and profiles.profile_id = arn_set_matches.profile_id
    left join profile_models
        on
            profiles.region = profile_models.region
            and profiles.profile_id = profile_models.profile_id
),

-- A series is matched to a profile by its short id or, should CloudWatch publish it so, by its ARN.
profile_keys as (
    select
        profile_id as series_key,
        *
    from profile_endpoints
    union all
    select
        profile_arn as series_key,
        *
    from profile_endpoints
    where profile_arn is not null
),

series as (
    select
        coalesce(metric_series.region, profile_keys.region) as region,
        coalesce(metric_series.account_id, profile_keys.account_id) as account_id,
        coalesce(metric_series.series_id, profile_keys.profile_id) as series_id,
        metric_series.series_id is not null as has_metrics,
        metric_series.first_ts,
        metric_series.last_ts,
        profile_keys.profile_id,
        profile_keys.profile_arn,
        profile_keys.profile_name,
        profile_keys.profile_type,
        profile_keys.status as profile_status,
        profile_keys.is_current as profile_is_current,
        profile_keys.model_arns,
        profile_keys.endpoint as profile_endpoint,
        profile_keys.mapped_by as profile_mapped_by,
        profile_keys.base_model_id as profile_base_model_id
    from metric_series
    full outer join profile_keys
        on
            metric_series.region = profile_keys.region
            and metric_series.series_id = profile_keys.series_key
    -- A profile without metrics appears once, under its short id, not once more under its ARN.
    where metric_series.series_id is not null or profile_keys.series_key = profile_keys.profile_id
),

-- Series known only from CloudWatch: the id itself says what it is. Cross-region profile ids are the model
-- id behind a geography prefix; base model ids are provider.model; anything else (no dot) is an application
-- profile deleted before any profile snapshot saw it.
classified as (
    select
        *,
        regexp_extract(series_id, '^(global|us-gov|us|eu|apac|jp|au|ca)\.', 1) as id_prefix
    from series
),

resolved as (
    select
        classified.*,
        coalesce(classified.profile_endpoint, classified.series_id) as endpoint,
        coalesce(
            classified.profile_mapped_by,
            case
                when classified.id_prefix <> '' then 'id_prefix'
                when classified.series_id like '%.%' then 'base_model'
                else 'unmapped'
            end
        ) as mapped_by,
        coalesce(
            classified.profile_base_model_id,
            case
                when classified.id_prefix <> ''
                    then substr(classified.series_id, len(classified.id_prefix) + 2)
                when classified.series_id like '%.%' then classified.series_id
            end
        ) as base_model_id
    from classified
),

kinds as (
    select
        resolved.*,
        coalesce(
            system_profiles.endpoint_kind,
            case
                when resolved.endpoint like 'global.%' then 'global'
                when regexp_matches(resolved.endpoint, '^(us-gov|us|eu|apac|jp|au|ca)\.') then 'geo'
                when resolved.endpoint like '%.%' then 'base'
                else 'unmapped'
            end
        ) as endpoint_kind
    from resolved
    left join system_profiles
        on
            resolved.region = system_profiles.region
            and resolved.endpoint = system_profiles.profile_id
)

select
    cast(region as varchar) as region,
    cast(account_id as varchar) as account_id,
    cast(series_id as varchar) as series_id,
    cast(endpoint as varchar) as endpoint,
    cast(endpoint_kind as varchar) as endpoint_kind,
    cast(coalesce(profile_type = 'APPLICATION', false) as boolean) as is_application_profile,
    cast(profile_id as varchar) as profile_id,
    cast(profile_name as varchar) as profile_name,
    cast(profile_arn as varchar) as profile_arn,
    cast(profile_type as varchar) as profile_type,
    cast(profile_status as varchar) as profile_status,
    cast(profile_is_current as boolean) as profile_is_current,
    cast(base_model_id as varchar) as base_model_id,
    cast(model_arns as varchar[]) as model_arns,
    cast(mapped_by as varchar) as mapped_by,
    cast(has_metrics as boolean) as has_metrics,
    cast(first_ts as timestamp) as first_ts,
    cast(last_ts as timestamp) as last_ts
from kinds
