-- CloudWatch datapoints of the AWS/Bedrock namespace with one column per (metric, statistic).
-- Grain: one row per region x series_id x period_s x ts (bucket start, naive UTC).
--
-- The lake already holds this grain: the extraction writes one row per series, period and bucket with a
-- column per statistic, and replaces the cells it reads again, so a datapoint is held once; the blocking
-- check no_duplicate_points proves on every build that no (region, series, period, bucket) appears twice in
-- the raw files. Staging only names and types the columns. This is the largest table of the warehouse.

select
    cast(region as varchar) as region,
    -- A lake holds one account: its partitions are region x day, so a second account would replace the
    -- first's files.
    cast(account_id as varchar) as account_id,
    cast(model_id as varchar) as series_id,
    cast(period_s as integer) as period_s,
    cast(ts as timestamp) as ts,
    cast(invocations as double) as invocations,
    cast(input_tokens as double) as input_tokens,
    cast(output_tokens as double) as output_tokens,
    cast(cache_read_tokens as double) as cache_read_tokens,
    cast(cache_write_tokens as double) as cache_write_tokens,
    cast(throttles as double) as throttles,
    cast(client_errors as double) as client_errors,
    cast(server_errors as double) as server_errors,
    cast(estimated_tpm_quota_usage as double) as estimated_tpm_quota_usage,
    cast(latency_avg_ms as double) as latency_avg_ms,
    cast(latency_samples as double) as latency_samples,
    cast(ttft_avg_ms as double) as ttft_avg_ms,
    cast(ttft_samples as double) as ttft_samples
from raw_metric_points
