"""stg_metric_points and usage_minute on fixture rows: de-duplication, the 5-minute fallback, quota TPM."""

from __future__ import annotations

from datetime import datetime, timedelta

from pipelines.models import build_model, discover_models
from tests.models.lakes import HAIKU_35, SONNET_4, FixtureLake, fm_arn, one, rows

AS_OF = datetime(2025, 6, 10, 12, 0)
T = AS_OF - timedelta(minutes=30)


def test_each_metric_and_statistic_becomes_one_column_of_its_minute(lake: FixtureLake) -> None:
    lake.point(SONNET_4, "InputTokenCount", T, 70)
    lake.point(SONNET_4, "OutputTokenCount", T, 5)
    lake.point(SONNET_4, "InvocationLatency", T, 900, stat="Average")
    lake.point(SONNET_4, "InvocationLatency", T, 3, stat="SampleCount")
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select series_id, period_s, ts, input_tokens, output_tokens, latency_avg_ms, latency_samples "
        "from stg_metric_points",
    ) == [(SONNET_4, 60, T, 70.0, 5.0, 900.0, 3.0)]
    assert rows(connection, "select input_tokens, output_tokens, tpm from usage_minute") == [(70.0, 5.0, 75.0)]


def test_metrics_absent_in_an_active_minute_count_as_zero_and_latency_stays_unknown(lake: FixtureLake) -> None:
    lake.minute(SONNET_4, T, input=100)
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select output_tokens, invocations, throttles, rpm, latency_ms, latency_samples, resolution_s "
        "from usage_minute",
    ) == [(0.0, 0.0, 0.0, 0.0, None, None, 60)]


def test_metrics_the_warehouse_does_not_use_are_ignored(lake: FixtureLake) -> None:
    lake.point(SONNET_4, "OutputImageCount", T, 3)  # the only datapoint of that minute
    lake.point(SONNET_4, "OutputImageCount", T + timedelta(minutes=1), 3)
    lake.minute(SONNET_4, T + timedelta(minutes=1), input=10)
    connection = lake.build(AS_OF)

    assert rows(connection, "select ts, input_tokens from usage_minute") == [(T + timedelta(minutes=1), 10.0)]


def test_a_5_minute_bucket_fills_in_only_where_no_1_minute_data_was_read(lake: FixtureLake) -> None:
    old = datetime(2025, 5, 20, 10, 0)  # older than 15 days: read at 300 s
    recent = datetime(2025, 6, 1, 10, 0)
    lake.coverage(datetime(2025, 5, 20), datetime(2025, 5, 21), period_s=300)
    lake.coverage(datetime(2025, 6, 1), datetime(2025, 6, 2), period_s=60)
    # Also read at 300 s (as a coarser pass would): must not double the 1-minute data.
    lake.coverage(datetime(2025, 6, 1), datetime(2025, 6, 2), period_s=300)
    lake.minute(SONNET_4, old, period_s=300, input=500, output=50, invocations=10, latency=800, latency_samples=10)
    lake.minute(SONNET_4, recent, period_s=300, input=9999)
    lake.minute(SONNET_4, recent + timedelta(minutes=2), input=40)
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select ts, input_tokens, output_tokens, rpm, latency_ms, latency_samples, resolution_s "
        "from usage_minute order by ts",
    ) == [(old + timedelta(minutes=k), 100.0, 10.0, 2.0, 800.0, 2.0, 300) for k in range(5)] + [
        (recent + timedelta(minutes=2), 40.0, 0.0, 0.0, None, None, 60)
    ]


def test_a_5_minute_bucket_is_dropped_where_the_series_has_1_minute_data_even_without_coverage(
    lake: FixtureLake,
) -> None:
    bucket = datetime(2025, 6, 1, 10, 0)
    lake.minute(SONNET_4, bucket, period_s=300, input=9999)
    lake.minute(SONNET_4, bucket + timedelta(minutes=3), input=40)
    lake.minute(HAIKU_35, bucket, period_s=300, input=50)  # another series: no finer data, kept
    connection = lake.build(AS_OF)

    assert rows(
        connection, "select series_id, sum(input_tokens), count(*) from usage_minute group by 1 order by 1"
    ) == [
        (HAIKU_35, 50.0, 5),
        (SONNET_4, 40.0, 1),
    ]


def test_quota_tpm_applies_the_output_burndown_from_the_models_release(lake: FixtureLake) -> None:
    # Claude Sonnet 4: output x 5 from 2025-05-22; Claude 3.5 Haiku: x 1.
    lake.minute(SONNET_4, T, input=100, output=10, cache_write=20, cache_read=1000)
    lake.minute(SONNET_4, datetime(2025, 5, 21, 12, 0), input=100, output=10, cache_write=20)
    lake.minute(HAIKU_35, T, input=100, output=10, cache_write=20)
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select series_id, ts, tpm, quota_tpm_computed, quota_tpm, estimated_tpm_quota_usage "
        "from usage_minute order by series_id, ts",
    ) == [
        (HAIKU_35, T, 110.0, 130.0, 130.0, None),
        (SONNET_4, datetime(2025, 5, 21, 12, 0), 110.0, 130.0, 130.0, None),
        (SONNET_4, T, 110.0, 170.0, 170.0, None),
    ]


def test_quota_tpm_is_cloudwatchs_estimate_where_published_and_the_formula_stays_beside_it(
    lake: FixtureLake,
) -> None:
    lake.minute(SONNET_4, T, input=100, output=10, estimated=999)
    lake.minute(SONNET_4, T + timedelta(minutes=1), input=100, output=10)
    connection = lake.build(AS_OF)

    assert rows(
        connection, "select quota_tpm, quota_tpm_computed, estimated_tpm_quota_usage from usage_minute order by ts"
    ) == [(999.0, 150.0, 999.0), (150.0, 150.0, None)]


def test_burndown_takes_the_longest_matching_prefix_in_force_that_day(lake: FixtureLake) -> None:
    day1, day2, day3 = (datetime(2025, 6, d, 12, 0) for d in (1, 3, 5))
    for ts in (day1, day2, day3):
        lake.minute(SONNET_4, ts, output=10)
    connection = lake.build(
        AS_OF, models=("stg_metric_points", "stg_metric_coverage", "stg_inference_profiles", "endpoints")
    )
    connection.execute(
        """
        create or replace table burndown_rates as
        select * from (values
            ('anthropic.', date '2025-06-01', 2.0, 1.0),
            ('anthropic.claude-sonnet-4', date '2025-06-03', 3.0, 1.0),
            ('anthropic.', date '2025-06-05', 7.0, 1.0)
        ) as rates(model_id_prefix, effective_from, output_multiplier, cache_write_multiplier)
        """
    )
    models = {model.name: model for model in discover_models()}
    for name in ("model_burndown", "usage_bucket", "usage_minute"):
        build_model(connection, models[name], lake=lake.root, as_of=AS_OF)
    # The generic rule of 06-05 does not override the model's own rule of 06-03.
    assert rows(connection, "select ts, quota_tpm from usage_minute order by ts") == [
        (day1, 20.0),
        (day2, 30.0),
        (day3, 30.0),
    ]


def test_series_of_an_application_profile_are_attributed_to_its_endpoint(lake: FixtureLake) -> None:
    lake.profile("app000000001", [fm_arn(SONNET_4)])
    lake.minute("app000000001", T, input=1)
    connection = lake.build(AS_OF)

    assert one(connection, "select endpoint from usage_minute") == SONNET_4
