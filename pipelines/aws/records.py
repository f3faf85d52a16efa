"""Typed records the boto3 functions return: a frozen dataclass per API object, metric datapoints as columns.

Times are naive UTC datetimes, the warehouse's convention; the functions in this package convert what botocore
returns (aware datetimes) before building a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar


@dataclass(frozen=True)
class FoundationModelRecord:
    """One foundation model offered in a region (ListFoundationModels)."""

    model_id: str
    model_arn: str
    model_name: str
    provider: str
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    inference_types: tuple[str, ...]
    response_streaming: bool | None
    lifecycle_status: str | None


@dataclass(frozen=True)
class InferenceProfileRecord:
    """One inference profile, system-defined or application (ListInferenceProfiles)."""

    profile_id: str
    profile_arn: str
    name: str
    description: str | None
    type: str
    status: str
    model_arns: tuple[str, ...]
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ProfileTagRecord:
    """One tag of an inference profile (ListTagsForResource)."""

    profile_arn: str
    profile_id: str
    key: str
    value: str


@dataclass(frozen=True)
class QuotaRecord:
    """One service quota of a region.

    ``value`` is what applies (the applied value, else the AWS default); ``applied_value`` is None when the
    account holds no value of its own, i.e. the quota is at its default.
    """

    quota_code: str
    quota_name: str
    quota_arn: str | None
    value: float | None
    default_value: float | None
    applied_value: float | None
    unit: str | None
    adjustable: bool | None
    global_quota: bool | None


@dataclass(frozen=True)
class MetricQuery:
    """One GetMetricData query: a statistic of a metric of one ModelId, under a call-local ``query_id``."""

    query_id: str
    model_id: str
    metric: str
    stat: str


@dataclass(frozen=True)
class QueryBatch:
    """The queries of one GetMetricData call (before NextToken pages) over [start, end) at ``period_s``."""

    queries: tuple[MetricQuery, ...]
    start: datetime
    end: datetime
    period_s: int

    @property
    def datapoint_slots(self) -> int:
        """The most datapoints the call can return: queries x periods (the unit of the 100,800 limit)."""
        return len(self.queries) * periods_in(self.start, self.end, self.period_s)


def periods_in(start: datetime, end: datetime, period_s: int) -> int:
    """How many periods of ``period_s`` start in [start, end)."""
    seconds = int((end - start).total_seconds())
    return max(0, -(-seconds // period_s))


@dataclass(frozen=True)
class CallStats:
    """What a GetMetricData fetch cost.

    ``calls`` counts NextToken pages too, ``metrics_requested`` the queries sent over those calls (the billed
    unit), ``datapoints`` what came back and ``datapoint_slots`` the queries x periods asked for.
    """

    calls: int = 0
    metrics_requested: int = 0
    datapoints: int = 0
    datapoint_slots: int = 0

    def __add__(self, other: CallStats) -> CallStats:
        return CallStats(
            calls=self.calls + other.calls,
            metrics_requested=self.metrics_requested + other.metrics_requested,
            datapoints=self.datapoints + other.datapoints,
            datapoint_slots=self.datapoint_slots + other.datapoint_slots,
        )


@dataclass(frozen=True)
class MetricPoints:
    """CloudWatch datapoints as parallel columns, one entry per datapoint; ``ts`` is the period start, UTC."""

    model_id: tuple[str, ...] = ()
    metric: tuple[str, ...] = ()
    stat: tuple[str, ...] = ()
    period_s: tuple[int, ...] = ()
    ts: tuple[datetime, ...] = ()
    value: tuple[float, ...] = ()

    COLUMNS: ClassVar[tuple[str, ...]] = ("model_id", "metric", "stat", "period_s", "ts", "value")

    def __len__(self) -> int:
        return len(self.ts)

    def __add__(self, other: MetricPoints) -> MetricPoints:
        return MetricPoints(
            model_id=self.model_id + other.model_id,
            metric=self.metric + other.metric,
            stat=self.stat + other.stat,
            period_s=self.period_s + other.period_s,
            ts=self.ts + other.ts,
            value=self.value + other.value,
        )

    def as_columns(self) -> dict[str, tuple]:
        """The columns by name, ready for ``pyarrow.table``."""
        return {name: getattr(self, name) for name in self.COLUMNS}
