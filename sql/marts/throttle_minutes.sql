-- Every minute in which Bedrock throttled an endpoint, with the endpoint's usage that minute against
-- its tokens-per-minute and requests-per-minute quotas, and which of them was at or near its limit.
-- Grain: one row per region x endpoint x ts (minute start, naive UTC) with InvocationThrottles > 0 summed
-- over the endpoint's series, from 1-minute data only (a coarse bucket does not say which minute was
-- throttled).
--
-- Near means at least 80 % of the quota in force at as_of (quota_map.effective_value; where an endpoint has
-- several quotas of a type, the smallest): accepted usage stays just under the quota even in minutes Bedrock
-- throttled, because Bedrock admits requests against the max_tokens it reserves, not the tokens later used.
-- limiting_quota is 'tpm', 'rpm', 'tpm+rpm', 'neither' (both known quotas were below 80 %), or 'unknown'
-- (no TPM or RPM quota is mapped to the endpoint).

with throttled as (
    select
        region,
        endpoint,
        ts,
        throttles,
        tpm,
        quota_tpm,
        rpm
    from endpoint_minute
    where
        resolution_s = 60
        and throttles > 0
        and ts < getvariable('as_of')
),

quotas as (
    select
        region,
        endpoint,
        min(effective_value) filter (where quota_type = 'tpm') as tpm_quota,
        min(effective_value) filter (where quota_type = 'rpm') as rpm_quota
    from quota_map
    group by region, endpoint
),

measured as (
    select
        throttled.*,
        quotas.tpm_quota,
        quotas.rpm_quota,
        throttled.quota_tpm / nullif(quotas.tpm_quota, 0) as tpm_utilisation,
        throttled.rpm / nullif(quotas.rpm_quota, 0) as rpm_utilisation
    from throttled
    left join quotas
        on
            throttled.region = quotas.region
            and throttled.endpoint = quotas.endpoint
)

select
    cast(region as varchar) as region,
    cast(endpoint as varchar) as endpoint,
    cast(ts as timestamp) as ts,
    cast(throttles as bigint) as throttles,
    cast(tpm as bigint) as tpm,
    cast(quota_tpm as double) as quota_tpm,
    cast(rpm as bigint) as rpm,
    cast(tpm_quota as double) as tpm_quota,
    cast(rpm_quota as double) as rpm_quota,
    cast(tpm_utilisation as double) as tpm_utilisation,
    cast(rpm_utilisation as double) as rpm_utilisation,
    cast(
        case
            when tpm_utilisation >= 0.8 and rpm_utilisation >= 0.8 then 'tpm+rpm'
            when tpm_utilisation >= 0.8 then 'tpm'
            when rpm_utilisation >= 0.8 then 'rpm'
            when tpm_utilisation is null and rpm_utilisation is null then 'unknown'
            else 'neither'
        end as varchar
    ) as limiting_quota
from measured
