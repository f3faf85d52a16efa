"""Warehouses for the report tests.

``build_warehouse`` writes a small warehouse with the documented mart columns from generated minutes, the marts
computed here with plain SQL so the report is tested independently of the models (only the guaranteed columns
exist, so the report's use of optional ones is tested too). ``build_coverage_lake`` fills a fixture lake that the
real models build, read partly at 5-minute resolution, for the tests of coverage and resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

AS_OF = datetime(2025, 6, 10, 12, 0)
ACCOUNT_ID = "123456789012"
EVIL_TAG = '<script>alert("owned")</script> "quoted" \'single\' & ünïcödé ✓ \u2028 </script><!--'

GEO = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
BASE = "amazon.nova-lite-v1:0"
EU_GEO = "eu.amazon.nova-pro-v1:0"
BIG = "us.meta.llama3-3-70b-instruct-v1:0"

TPM_QUOTA = 70_000
RPM_QUOTA = 40
TPD_QUOTA = 25_000_000


@dataclass(frozen=True)
class Series:
    region: str
    endpoint: str
    endpoint_kind: str
    series_id: str
    profile_name: str | None
    base_tpm: float
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def is_application_profile(self) -> bool:
        return self.profile_name is not None


SMALL_SERIES = (
    Series("us-east-1", GEO, "geo", GEO, None, 8_000),
    Series("us-east-1", GEO, "geo", "a1b2c3d4e5f6", "search-api", 6_000, (("team", "search"), ("project", "alpha"))),
    Series("us-east-1", GEO, "geo", "f6e5d4c3b2a1", "chat-bot", 4_000, (("team", "chat"), ("project", "beta"))),
    Series("us-east-1", GEO, "geo", "e1v2i3l4x5y6", "evil-profile", 1_500, (("team", EVIL_TAG), ("project", "alpha"))),
    Series("us-east-1", BASE, "base", BASE, None, 900),
    Series("eu-west-1", EU_GEO, "geo", EU_GEO, None, 2_000),
    Series("eu-west-1", EU_GEO, "geo", "k9j8h7g6f5e4", "eu-batch", 3_000, (("team", "batch"),)),
)


def _minutes(series: Series, start: datetime, count: int, step_min: int, rng: np.random.Generator) -> pa.Table:
    """Generated rows as the models write them: a daily shape, noise, bursts, idle minutes without a row.

    Coarse data follows the models' convention: a 5-minute bucket is spread evenly over its five minutes (counts
    divided by five, one row per minute) and marked resolution_s = 300.
    """
    offsets = np.arange(count, dtype=np.int64) * step_min
    minute_of_day = (start.hour * 60 + start.minute + offsets) % 1440
    shape = 0.35 + 1.1 * np.clip(np.sin((minute_of_day - 360) / 1440 * 2 * np.pi), 0, None)
    bursts = np.where(rng.random(count) < 0.01, rng.uniform(1.5, 2.5, count), 1.0)
    tokens = series.base_tpm * shape * bursts * rng.uniform(0.7, 1.3, count) * step_min
    active = rng.random(count) > (0.05 if series.profile_name is None else 0.15)
    tokens = np.where(active, tokens, 0)
    output = np.rint(tokens * 0.25)
    inputs = np.rint(tokens) - output
    cache_read = np.rint(inputs * 0.2)
    cache_write = np.rint(inputs * 0.05)
    invocations = np.maximum(np.rint(tokens / 1_000), 1)
    ts = np.datetime64(start, "us") + offsets.astype("timedelta64[m]")
    keep = active
    n = int(keep.sum())
    # Spread each kept bucket over its minutes.
    spread = np.repeat(np.arange(n), step_min)
    minute = np.tile(np.arange(step_min), n).astype("timedelta64[m]")
    rows = n * step_min

    def per_minute(values: np.ndarray) -> np.ndarray:
        return values[keep][spread] / step_min

    inputs_m, output_m, cache_write_m = per_minute(inputs), per_minute(output), per_minute(cache_write)
    return pa.table(
        {
            "region": [series.region] * rows,
            "series_id": [series.series_id] * rows,
            "endpoint": [series.endpoint] * rows,
            "ts": ts[keep][spread] + minute,
            "input_tokens": inputs_m,
            "output_tokens": output_m,
            "cache_read_tokens": per_minute(cache_read),
            "cache_write_tokens": cache_write_m,
            "invocations": per_minute(invocations),
            "throttles": np.zeros(rows),
            "client_errors": np.rint(rng.random(rows) * 0.6),
            "server_errors": np.zeros(rows),
            "latency_ms": rng.uniform(800, 4_000, rows).round(1),
            "ttft_ms": rng.uniform(200, 900, rows).round(1),
            "tpm": inputs_m + output_m,
            "quota_tpm": inputs_m + cache_write_m + 5 * output_m,
            "rpm": per_minute(invocations),
            "resolution_s": np.full(rows, step_min * 60, dtype=np.int32),
        }
    )


WINDOWS_SQL = (
    "select * from (values ('1h', 60), ('1d', 1440), ('7d', 10080), ('14d', 20160), ('30d', 43200)) as w(win, minutes)"
)
METRICS = (
    "tpm",
    "quota_tpm",
    "rpm",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "invocations",
    "throttles",
    "client_errors",
    "server_errors",
    "latency_ms",
    "ttft_ms",
)


def build_warehouse(
    path: Path,
    series: tuple[Series, ...] = SMALL_SERIES,
    *,
    days_1min: int = 14,
    days_5min: int = 7,
    with_quotas: bool = True,
    with_quota_map: bool = False,
    model_columns: bool = False,
    series_stats: bool = True,
    seed: int = 7,
) -> Path:
    """Write a DuckDB file holding every mart the report reads (quota marts optional) for ``series`` at AS_OF.

    ``model_columns`` adds the extra columns the real models write (account_id, output_multiplier,
    quota_tpm_computed, estimated_tpm_quota_usage, where the first endpoint's AWS estimate runs 10 % under the
    computed value); ``with_quota_map`` adds a quota_map carrying the quota values.
    """
    rng = np.random.default_rng(seed)
    connection = duckdb.connect(str(path))
    tables = []
    for item in series:
        start_1min = AS_OF - timedelta(days=days_1min)
        tables.append(_minutes(item, start_1min, days_1min * 1440, 1, rng))
        if days_5min:
            start_5min = start_1min - timedelta(days=days_5min)
            tables.append(_minutes(item, start_5min, days_5min * 288, 5, rng))
    minutes = pa.concat_tables(tables)
    connection.register("generated", minutes)
    connection.execute("create table usage_minute as select * from generated")
    connection.unregister("generated")
    # Throttles where the endpoint's quota TPM runs past the quota, split over its series by their quota TPM.
    connection.execute(
        """
        update usage_minute as u set throttles = round(
            (agg.quota_tpm - ?) / 500 * u.quota_tpm / agg.quota_tpm
        )
        from (
            select region, endpoint, ts, sum(quota_tpm) as quota_tpm from usage_minute group by all
        ) as agg
        where u.region = agg.region and u.endpoint = agg.endpoint and u.ts = agg.ts
            and agg.quota_tpm > ? and u.resolution_s = 60
        """,
        [TPM_QUOTA, TPM_QUOTA],
    )
    extra_sums = ""
    if model_columns:
        connection.execute(
            f"""
            alter table usage_minute add column account_id varchar default '{ACCOUNT_ID}';
            alter table usage_minute add column output_multiplier double default 5;
            alter table usage_minute add column quota_tpm_computed double;
            alter table usage_minute add column estimated_tpm_quota_usage double;
            update usage_minute set
                quota_tpm_computed = quota_tpm,
                estimated_tpm_quota_usage = case when endpoint = '{series[0].endpoint}' then quota_tpm * 0.9 end;
            update usage_minute set quota_tpm = coalesce(estimated_tpm_quota_usage, quota_tpm_computed);
            """
        )
        extra_sums = (
            "any_value(account_id) as account_id, sum(quota_tpm_computed) as quota_tpm_computed, "
            "sum(estimated_tpm_quota_usage) as estimated_tpm_quota_usage,"
        )
    endpoint_rows = [
        (
            s.region,
            s.series_id,
            s.endpoint,
            s.endpoint_kind,
            s.is_application_profile,
            s.profile_name,
            f"arn:aws:bedrock:{s.region}:{ACCOUNT_ID}:application-inference-profile/{s.series_id}"
            if s.is_application_profile
            else None,
            s.endpoint.split(".", 1)[1] if s.endpoint_kind == "geo" else s.endpoint,
        )
        for s in series
    ]
    connection.execute(
        """
        create table endpoints (
            region varchar, series_id varchar, endpoint varchar, endpoint_kind varchar,
            is_application_profile boolean, profile_name varchar, profile_arn varchar, base_model_id varchar
        )
        """
    )
    connection.executemany("insert into endpoints values (?, ?, ?, ?, ?, ?, ?, ?)", endpoint_rows)
    connection.execute("create table profile_tags (series_id varchar, tag_key varchar, tag_value varchar)")
    connection.executemany(
        "insert into profile_tags values (?, ?, ?)",
        [(s.series_id, key, value) for s in series for key, value in s.tags],
    )
    connection.execute(
        f"""
        create table endpoint_minute as
        select
            region, endpoint, ts,
            sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens,
            sum(cache_read_tokens) as cache_read_tokens, sum(cache_write_tokens) as cache_write_tokens,
            sum(invocations) as invocations, sum(throttles) as throttles,
            sum(client_errors) as client_errors, sum(server_errors) as server_errors,
            sum(latency_ms * invocations) / sum(invocations) as latency_ms,
            sum(ttft_ms * invocations) / sum(invocations) as ttft_ms,
            sum(tpm) as tpm, sum(quota_tpm) as quota_tpm, sum(rpm) as rpm, max(resolution_s) as resolution_s,
            {extra_sums}
        from usage_minute group by all
        """
    )
    connection.execute(
        """
        create table tpd_daily as
        with days as (select unnest(range(0, 30)) as k),
        bounds as (select ?::timestamp - k * interval 1 day as day_end from days),
        per_series as (
            select u.region, u.endpoint, u.series_id, b.day_end - interval 1 day as day_start, b.day_end,
                sum(u.input_tokens + u.output_tokens) as tokens
            from usage_minute as u join bounds as b on u.ts >= b.day_end - interval 1 day and u.ts < b.day_end
            group by all
        )
        select * from per_series
        union all
        select region, endpoint, '*', day_start, day_end, sum(tokens) from per_series group by all
        """,
        [AS_OF],
    )
    # Every region was read at 1 minute for the last days_1min days and at 5 minutes for days_5min days before.
    coverage_rows = []
    for region in sorted({item.region for item in series}):
        for window, minutes in (("1h", 60), ("1d", 1440), ("7d", 10080), ("14d", 20160), ("30d", 43200)):
            at_1min = min(minutes, days_1min * 1440)
            at_5min = min(minutes - at_1min, days_5min * 1440)
            read = at_1min + at_5min
            coverage_rows.append(
                (
                    region,
                    window,
                    minutes,
                    at_1min,
                    at_5min,
                    0,
                    minutes - read,
                    AS_OF - timedelta(minutes=read) if read else None,
                    AS_OF,
                )
            )
    connection.execute(
        """
        create table window_coverage (
            region varchar, "window" varchar, window_minutes integer, covered_minutes_1min integer,
            covered_minutes_5min integer, covered_minutes_1h integer, uncovered_minutes integer,
            coverage_start timestamp, as_of timestamp
        )
        """
    )
    connection.executemany("insert into window_coverage values (?, ?, ?, ?, ?, ?, ?, ?, ?)", coverage_rows)
    connection.execute(
        """
        create table throttle_minutes as
        select
            region, endpoint, ts, throttles, tpm, quota_tpm, rpm,
            case
                when endpoint <> ? then 'unknown'
                when quota_tpm >= 0.8 * ? and rpm >= 0.8 * ? then 'tpm+rpm'
                when quota_tpm >= 0.8 * ? then 'tpm'
                when rpm >= 0.8 * ? then 'rpm'
                else 'neither'
            end as limiting_quota
        from endpoint_minute
        where resolution_s = 60 and throttles > 0 and ts < ?
        """,
        [series[0].endpoint, TPM_QUOTA, RPM_QUOTA, TPM_QUOTA, RPM_QUOTA, AS_OF],
    )
    metric_list = ", ".join(METRICS)
    casts = ", ".join(f"{name}::double as {name}" for name in METRICS)
    series_part = f"union all select region, endpoint, series_id, ts, {casts} from usage_minute" if series_stats else ""
    connection.execute(
        f"""
        create table window_stats as
        with windows as ({WINDOWS_SQL}),
        wide as (
            select region, endpoint, '*' as series_id, ts, {casts} from endpoint_minute
            {series_part}
        ),
        long as (unpivot wide on {metric_list} into name metric value value),
        tpd as (
            select region, endpoint, series_id, day_end as ts, 'tpd' as metric, tokens::double as value
            from tpd_daily
        ),
        everything as (select * from long union all select * from tpd)
        select
            e.region, e.endpoint, e.series_id, w.win as "window", e.metric,
            quantile_cont(e.value, 0.5) as p50, quantile_cont(e.value, 0.9) as p90,
            quantile_cont(e.value, 0.99) as p99, avg(e.value) as "avg", max(e.value) as "max",
            sum(e.value) as total, count(*) as active_points, any_value(w.minutes) as window_points,
            ?::timestamp as as_of,
        from everything as e
        join windows as w
            on e.ts >= ?::timestamp - w.minutes * interval 1 minute and e.ts < ?::timestamp
            or (e.metric = 'tpd' and e.ts = ?::timestamp)
        group by all
        """,
        [AS_OF, AS_OF, AS_OF, AS_OF],
    )
    connection.execute(
        f"""
        create table tag_attribution as
        with windows as ({WINDOWS_SQL}),
        keys as (
            select distinct e.region, e.endpoint, t.tag_key
            from profile_tags as t join endpoints as e using (series_id)
        ),
        labelled as (
            select u.*, k.tag_key, t.tag_value
            from usage_minute as u
            join keys as k on k.region = u.region and k.endpoint = u.endpoint
            left join profile_tags as t on t.series_id = u.series_id and t.tag_key = k.tag_key
        ),
        scoped as (
            select w.win, l.* from labelled as l join windows as w
                on l.ts >= ?::timestamp - w.minutes * interval 1 minute and l.ts < ?::timestamp
        ),
        totals as (
            select region, endpoint, win, tag_key, sum(input_tokens + output_tokens) as whole
            from scoped group by all
        )
        select
            s.region, s.endpoint, s.win as "window", s.tag_key, s.tag_value,
            sum(s.input_tokens + s.output_tokens) as tokens,
            sum(s.input_tokens + s.output_tokens) / any_value(t.whole) as share,
            sum(s.invocations) as invocations, max(s.tpm) as peak_tpm,
        from scoped as s join totals as t using (region, endpoint, win, tag_key)
        group by all
        """,
        [AS_OF, AS_OF],
    )
    connection.execute(
        f"""
        create table throttle_attribution as
        with windows as ({WINDOWS_SQL}),
        throttled as (
            select w.win, m.region, m.endpoint, m.ts from endpoint_minute as m join windows as w
                on m.ts >= ?::timestamp - w.minutes * interval 1 minute and m.ts < ?::timestamp
            where m.throttles > 0
        ),
        used as (
            select t.win, u.region, u.endpoint, u.series_id, sum(u.throttles) as throttles,
                count(*) as throttled_minutes, sum(u.input_tokens + u.output_tokens) as tokens
            from throttled as t
            join usage_minute as u on u.region = t.region and u.endpoint = t.endpoint and u.ts = t.ts
            group by t.win, u.region, u.endpoint, u.series_id
        )
        select region, endpoint, win as "window", series_id, throttles, throttled_minutes,
            tokens as tokens_in_throttled_minutes,
            tokens / sum(tokens) over (partition by region, endpoint, win) as share,
        from used
        """,
        [AS_OF, AS_OF],
    )
    if with_quotas:
        connection.execute(
            f"""
            create table quota_headroom as
            with windows as ({WINDOWS_SQL}),
            quotas as (
                select * from (values
                    ('tpm', 'L-TEST0001', {TPM_QUOTA}.0),
                    ('rpm', 'L-TEST0002', {RPM_QUOTA}.0),
                    ('tpd', 'L-TEST0003', {TPD_QUOTA}.0)
                ) as q(quota_type, quota_code, quota_value)
            ),
            usage as (
                select region, endpoint, ts, 'tpm' as quota_type, quota_tpm as value, throttles
                    from endpoint_minute
                union all select region, endpoint, ts, 'rpm', rpm, throttles from endpoint_minute
                union all select region, endpoint, day_end - interval 1 minute, 'tpd', tokens, null
                    from tpd_daily where series_id = '*'
            )
            select
                u.region, u.endpoint, q.quota_type, q.quota_code, q.quota_value, w.win as "window",
                quantile_cont(u.value, 0.9) as p90, max(u.value) as "max",
                quantile_cont(u.value, 0.9) / q.quota_value as utilisation_p90,
                max(u.value) / q.quota_value as utilisation_max,
                count(*) filter (where u.value >= 0.8 * q.quota_value) as minutes_over_80,
                count(*) filter (where u.value >= q.quota_value) as minutes_over_100,
                -- As the real mart: at 100 %, or throttled while at 80 % or more (tpd: days at 100 %).
                count(*) filter (
                    where u.value >= q.quota_value or (u.throttles > 0 and u.value >= 0.8 * q.quota_value)
                ) as minutes_at_quota,
                case when q.quota_type <> 'tpd' then count(*) filter (where u.throttles > 0) end
                    as throttled_minutes,
                count(*) as active_points,
            from usage as u
            join quotas as q using (quota_type)
            join windows as w on u.ts >= ?::timestamp - w.minutes * interval 1 minute and u.ts < ?::timestamp
            where u.endpoint = ?
            group by u.region, u.endpoint, q.quota_type, q.quota_code, q.quota_value, w.win
            """,
            [AS_OF, AS_OF, series[0].endpoint],
        )
    if with_quota_map:
        connection.execute(
            """
            create table quota_map (
                region varchar, model_id varchar, endpoint varchar, quota_type varchar, quota_code varchar,
                quota_name varchar, rule varchar, quota_value double, effective_value double
            )
            """
        )
        first = series[0]
        connection.executemany(
            "insert into quota_map values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (first.region, first.endpoint, first.endpoint, quota_type, code, name, "test rule", value, effective)
                for quota_type, code, name, value, effective in (
                    ("tpm", "L-TEST0001", "Cross-region model inference tokens per minute", TPM_QUOTA, TPM_QUOTA),
                    ("rpm", "L-TEST0002", "Cross-region model inference requests per minute", RPM_QUOTA, RPM_QUOTA),
                    ("tpd", "L-TEST0003", "Model invocation max tokens per day", TPD_QUOTA / 2, TPD_QUOTA),
                )
            ],
        )
    connection.close()
    return path


# An endpoint with more application profiles than a chart shows, 30 days of 1-minute data: the size worst case.
BIG_SERIES = (
    Series("us-west-2", BIG, "geo", BIG, None, 5_000),
    *(
        Series(
            "us-west-2",
            BIG,
            "geo",
            f"big{index:09d}",
            f"profile-{index:02d}",
            500 + 400 * index,
            (("team", f"team-{index % 4}"),),
        )
        for index in range(14)
    ),
)


# The lake of the coverage tests (built with the real models): what each region was read at, and when.
COVERAGE_1MIN_DAYS = 2
COVERAGE_5MIN_DAYS = 8
COVERAGE_THROTTLED_MINUTES = (30, 90)  # minutes before as_of, 3 throttles each, at 1-minute resolution
COVERAGE_THROTTLED_BUCKET_DAYS = 3  # days before as_of: the one throttled 5-minute bucket, 7 throttles
COVERAGE_APP_PROFILE = "cov0profile1"
COVERAGE_EU_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


def build_coverage_lake(lake) -> None:
    """Fill a tests.models.lakes.FixtureLake: see the ``coverage_lake`` fixture for what it holds."""
    from tests.models.lakes import SONNET_4, fm_arn

    lake.foundation_model(SONNET_4, "Claude Sonnet 4")
    for code, kind, value in (("L-0000000A", "tokens per minute", 40_000), ("L-0000000B", "requests per minute", 20)):
        lake.quota(code, f"On-demand model inference {kind} for Anthropic Claude Sonnet 4 V1", value)
    lake.quota("L-0000000C", "Model invocation max tokens per day for Anthropic Claude Sonnet 4 V1", 20_000_000)
    lake.profile(COVERAGE_APP_PROFILE, [fm_arn(SONNET_4)], name="coverage-app")
    lake.tags(COVERAGE_APP_PROFILE, {"team": "search"})
    one_minute_start = AS_OF - timedelta(days=COVERAGE_1MIN_DAYS)
    five_minute_start = one_minute_start - timedelta(days=COVERAGE_5MIN_DAYS)
    lake.coverage(one_minute_start, AS_OF, period_s=60)
    lake.coverage(five_minute_start, one_minute_start, period_s=300)
    for n in range(1, COVERAGE_1MIN_DAYS * 1440 + 1):
        ts = AS_OF - timedelta(minutes=n)
        if n % 10 == 0 or n in COVERAGE_THROTTLED_MINUTES:
            throttles = 3 if n in COVERAGE_THROTTLED_MINUTES else 0
            lake.minute(SONNET_4, ts, input=1_000 + n % 700, output=100, invocations=2, throttles=throttles)
        if n % 7 == 0:
            lake.minute(COVERAGE_APP_PROFILE, ts, input=500 + n % 300, output=50, invocations=1)
    throttled_bucket = AS_OF - timedelta(days=COVERAGE_THROTTLED_BUCKET_DAYS)
    bucket = five_minute_start
    index = 0
    while bucket < one_minute_start:
        if index % 12 == 0 or bucket == throttled_bucket:
            lake.minute(
                SONNET_4,
                bucket,
                period_s=300,
                input=20_000 + 37 * (index % 50),
                output=1_000,
                invocations=10,
                throttles=7 if bucket == throttled_bucket else 0,
            )
        bucket += timedelta(minutes=5)
        index += 1
    # eu-west-1: every minute of the 30 days read at 1 minute.
    lake.coverage(AS_OF - timedelta(days=30), AS_OF, period_s=60, region="eu-west-1")
    for n in range(1, 31):
        lake.minute(
            COVERAGE_EU_MODEL, AS_OF - timedelta(hours=n * 20), input=300, output=30, invocations=1, region="eu-west-1"
        )


# The invocation logs of the caller tests, on top of the coverage lake's us-east-1 traffic: they hold the minutes
# CALLER_LOGS_TO to CALLER_LOGS_FROM before as_of (the newest minutes are not delivered yet, the older ones were
# never logged), so every window has a '(not in logs)' part.
CALLER_LOGS_FROM = 1440  # minutes before as_of: the oldest logged minute
CALLER_LOGS_TO = 15  # minutes before as_of: the newest logged minute
CALLER_BATCH_ROLES = 10  # role/batch-0 .. role/batch-9 share the direct traffic: more callers than a table shows
CALLER_UNLOGGED_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"  # called in us-east-1, never in its logs
CALLER_THROTTLED = {30: ("role/batch-3", 3), 90: ("role/batch-9", 3)}  # minute -> (caller, its throttles)


@dataclass(frozen=True)
class Call:
    """One caller_minutes row: what a principal sent to a series in a minute (minutes before as_of)."""

    minutes_before: int
    model_id: str
    principal: str
    session: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    throttles: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def caller_calls() -> list[Call]:
    """The logged calls: the coverage lake's traffic split among callers, token for token.

    Direct Sonnet 4 traffic (every 10th minute) goes to role/batch-<k> in turn, sessions job-0 to job-2; the
    application profile (every 7th minute, called by its ARN) alternates between role/search-api and user/alice;
    user/alice also called the profile in both throttled minutes (the extra datapoints of ``build_caller_lake``).
    """
    from tests.models.lakes import SONNET_4, app_arn

    profile = app_arn(COVERAGE_APP_PROFILE)
    calls = []
    for n in range(CALLER_LOGS_TO, CALLER_LOGS_FROM + 1):
        if n % 10 == 0:
            principal = f"role/batch-{(n // 10) % CALLER_BATCH_ROLES}"
            throttles = CALLER_THROTTLED[n][1] if n in CALLER_THROTTLED else 0
            calls.append(Call(n, SONNET_4, principal, f"job-{n % 3}", 2, 1_000 + n % 700, 100, throttles))
        if n % 7 == 0:
            principal, session = ("role/search-api", "web-1") if n % 14 == 0 else ("user/alice", None)
            calls.append(Call(n, profile, principal, session, 1, 500 + n % 300, 50))
        if n in CALLER_THROTTLED:
            calls.append(Call(n, profile, "user/alice", None, 1, 400, 40))
    return calls


def build_caller_lake(lake) -> list[Call]:
    """The coverage lake plus invocation logs of us-east-1 (eu-west-1 has none), and a us-east-1 endpoint the logs
    never name (CALLER_UNLOGGED_MODEL); returns the logged calls."""
    from tests.models.lakes import ACCOUNT

    build_coverage_lake(lake)
    lake.foundation_model(CALLER_UNLOGGED_MODEL, "Claude 3.5 Haiku")
    for n in range(60, 1440, 60):
        lake.minute(CALLER_UNLOGGED_MODEL, AS_OF - timedelta(minutes=n), input=200, output=20, invocations=1)
    for n in CALLER_THROTTLED:
        lake.minute(COVERAGE_APP_PROFILE, AS_OF - timedelta(minutes=n), input=400, output=40, invocations=1)
    calls = caller_calls()
    for call in calls:
        ts = AS_OF - timedelta(minutes=call.minutes_before)
        kind, name = call.principal.split("/", 1)
        identity = (
            f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{call.session}"
            if kind == "role"
            else f"arn:aws:iam::{ACCOUNT}:user/{name}"
        )
        lake.rows["caller_minutes", "us-east-1", ts.date()].append(
            {
                "account_id": ACCOUNT,
                "ts": ts,
                "model_id": call.model_id,
                "identity_arn": identity,
                "principal": call.principal,
                "session": call.session,
                "request_metadata": None,
                "requests": call.requests,
                "throttles": call.throttles,
                "errors": 0,
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "source": "s3://logs/fixture.json.gz",
                "fetched_at": AS_OF,
            }
        )
    return calls
