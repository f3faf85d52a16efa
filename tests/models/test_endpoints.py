"""endpoints: which endpoint each series and profile belongs to."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.models.lakes import (
    GLOBAL_SONNET_4,
    GLOBAL_SONNET_4_ARNS,
    HAIKU_35,
    SONNET_4,
    US_SONNET_4,
    US_SONNET_4_ARNS,
    FixtureLake,
    fm_arn,
    rows,
)

AS_OF = datetime(2025, 6, 10, 12, 0)
T = AS_OF - timedelta(minutes=5)


def endpoint_rows(lake: FixtureLake) -> dict[str, tuple]:
    connection = lake.build(AS_OF)
    found = rows(
        connection,
        "select series_id, endpoint, endpoint_kind, is_application_profile, base_model_id, mapped_by, has_metrics "
        "from endpoints",
    )
    return {row[0]: row[1:] for row in found}


def test_application_profiles_belong_to_the_system_profile_with_the_same_model_arn_set(lake: FixtureLake) -> None:
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    lake.profile(GLOBAL_SONNET_4, GLOBAL_SONNET_4_ARNS, kind="SYSTEM")
    # Copied from us.: the base model's ARN is one of its ARNs, but only the full set identifies the endpoint.
    lake.profile("copyofus0001", list(reversed(US_SONNET_4_ARNS)))
    lake.profile("copyofglobal", GLOBAL_SONNET_4_ARNS)
    lake.profile("copyofbase01", [fm_arn(SONNET_4)])
    # Two of the three us. ARNs: no system profile has that set and it is not a single model.
    lake.profile("oddsubset001", US_SONNET_4_ARNS[:2])
    for series in ("copyofus0001", "copyofglobal", "copyofbase01", US_SONNET_4, SONNET_4):
        lake.minute(series, T, input=1)

    assert endpoint_rows(lake) == {
        "copyofus0001": (US_SONNET_4, "geo", True, SONNET_4, "arn_set", True),
        "copyofglobal": (GLOBAL_SONNET_4, "global", True, SONNET_4, "arn_set", True),
        "copyofbase01": (SONNET_4, "base", True, SONNET_4, "single_model_arn", True),
        "oddsubset001": ("oddsubset001", "unmapped", True, SONNET_4, "unmapped", False),
        US_SONNET_4: (US_SONNET_4, "geo", False, SONNET_4, "system_profile", True),
        GLOBAL_SONNET_4: (GLOBAL_SONNET_4, "global", False, SONNET_4, "system_profile", False),
        SONNET_4: (SONNET_4, "base", False, SONNET_4, "base_model", True),
    }


def test_series_without_profile_information_are_classified_by_their_id(lake: FixtureLake) -> None:
    for series in (f"eu.{HAIKU_35}", f"us-gov.{HAIKU_35}", f"apac.{HAIKU_35}", HAIKU_35, "deleted00001"):
        lake.minute(series, T, input=1)

    assert endpoint_rows(lake) == {
        f"eu.{HAIKU_35}": (f"eu.{HAIKU_35}", "geo", False, HAIKU_35, "id_prefix", True),
        f"us-gov.{HAIKU_35}": (f"us-gov.{HAIKU_35}", "geo", False, HAIKU_35, "id_prefix", True),
        f"apac.{HAIKU_35}": (f"apac.{HAIKU_35}", "geo", False, HAIKU_35, "id_prefix", True),
        HAIKU_35: (HAIKU_35, "base", False, HAIKU_35, "base_model", True),
        "deleted00001": ("deleted00001", "unmapped", False, None, "unmapped", True),
    }


def test_a_profile_keeps_its_latest_snapshot_and_a_deleted_profile_keeps_its_endpoint(lake: FixtureLake) -> None:
    earlier, later = datetime(2025, 6, 1, 0, 0), datetime(2025, 6, 9, 0, 0)
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM", snapshot_at=earlier)
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM", snapshot_at=later)
    lake.profile("renamed00001", US_SONNET_4_ARNS, name="old name", snapshot_at=earlier)
    lake.profile("renamed00001", US_SONNET_4_ARNS, name="new name", snapshot_at=later)
    lake.profile("deleted00001", US_SONNET_4_ARNS, name="gone", snapshot_at=earlier)
    lake.minute("deleted00001", T, input=1)
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select series_id, endpoint, profile_name, profile_is_current from endpoints order by series_id",
    ) == [
        ("deleted00001", US_SONNET_4, "gone", False),
        ("renamed00001", US_SONNET_4, "new name", True),
        (US_SONNET_4, US_SONNET_4, US_SONNET_4, True),
    ]
