"""The sandbox as a process: start/stop, the port, the clock, stats, faults, the TPS limit and ``run``.

Each test that changes a server's state starts its own server instead of touching the shared ``sandbox``.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pipelines.sandbox import server as server_module
from pipelines.sandbox.server import SandboxPortInUse, SandboxServer

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BUSY = "1mkpeoqmauub"
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def query(query_id, metric, model_id=BUSY):
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Bedrock",
                "MetricName": metric,
                "Dimensions": [{"Name": "ModelId", "Value": model_id}],
            },
            "Period": 60,
            "Stat": "Sum",
        },
    }


def control(server, name, body=None):
    """Call a /_sandbox/ control endpoint; returns (status, decoded JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{server.endpoint_url}/_sandbox/{name}", data=data, method="POST" if data else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def serve(monkeypatch, aws_env):
    """``serve(**options)``: start a demo sandbox with these options and point AWS_ENDPOINT_URL at it."""
    started = []

    def start(**options):
        options.setdefault("now", NOW)
        server = SandboxServer("demo", **options).start()
        started.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
        return server

    yield start
    for server in started:
        server.stop()


# ---- lifecycle ---------------------------------------------------------------------------------------------


def test_a_taken_port_raises_sandbox_port_in_use(serve):
    first = serve()
    with pytest.raises(SandboxPortInUse) as excinfo:
        SandboxServer("demo", now=NOW, port=first.port).start()
    assert str(excinfo.value) == (
        f"port {first.port} on 127.0.0.1 is already in use; pass --port 0 for a free one or stop the other process"
    )


def test_stop_releases_the_port_even_with_a_keep_alive_client(serve, boto3_client):
    server = serve()
    client = boto3_client("sts")
    client.get_caller_identity()
    port = server.port
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with SandboxServer("demo", now=NOW, port=port) as again:
        assert again.port == port
        assert control(again, "health")[0] == 200


def test_a_scenario_file_path_is_served(boto3_client):
    from importlib import resources

    path = resources.files("pipelines.sandbox") / "scenarios" / "tiny.yaml"
    server = SandboxServer(str(path), now=NOW).start()
    try:
        client = boto3_client("sts", endpoint_url=server.endpoint_url)
        assert client.get_caller_identity()["Account"] == server.scenario.account_id
        assert server.scenario.name == "tiny"
    finally:
        server.stop()


def test_bad_options_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="fault rate"):
        SandboxServer("demo", fault_rate=1.5)
    with pytest.raises(ValueError, match="'boom'"):
        SandboxServer("demo", fault_kinds=("throttle", "boom"))
    with pytest.raises(ValueError, match="tps"):
        SandboxServer("demo", tps=0)


def test_run_prints_the_endpoint_and_environment_then_stops_on_ctrl_c(monkeypatch, capsys):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(server_module.time, "sleep", interrupt)
    server_module.run(port=0, now=NOW)
    out = capsys.readouterr().out
    assert "serving at http://127.0.0.1:" in out
    export = next(line for line in out.splitlines() if line.startswith("export AWS_ENDPOINT_URL="))
    assert export.endswith("AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1")
    endpoint = export.split()[1].split("=", 1)[1]
    port = int(endpoint.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


# ---- clock and stats ---------------------------------------------------------------------------------------


def test_clock_endpoints_move_the_sandbox_clock(serve):
    server = serve()
    assert control(server, "clock") == (200, {"now": "2026-11-20T12:00:00Z"})
    assert control(server, "clock", {"advance_seconds": 5400}) == (200, {"now": "2026-11-20T13:30:00Z"})
    assert server.now() == NOW + timedelta(minutes=90)
    assert control(server, "clock", {"now": "2026-11-21T00:00:00Z"}) == (200, {"now": "2026-11-21T00:00:00Z"})
    status, body = control(server, "clock", {"later": 1})
    assert status == 400 and "advance_seconds" in body["message"]
    status, health = control(server, "health")
    assert status == 200
    assert (health["status"], health["scenario"], health["now"]) == ("ok", "demo", "2026-11-21T00:00:00Z")


def test_an_unpinned_clock_follows_the_wall_clock(serve):
    server = serve(now=None)
    before = datetime.now(UTC)
    assert before - timedelta(seconds=5) <= server.now() <= datetime.now(UTC)
    server.advance(timedelta(days=1))
    assert server.now() >= before + timedelta(days=1)


def test_stats_count_calls_metrics_and_datapoints_and_reset_zeroes_them(serve, boto3_client):
    server = serve()
    cloudwatch = boto3_client("cloudwatch")
    response = cloudwatch.get_metric_data(
        MetricDataQueries=[
            query("a", "Invocations"),
            query("b", "InputTokenCount"),
            query("c", "OutputTokenCount"),
        ],
        StartTime=NOW - timedelta(hours=1),
        EndTime=NOW,
    )
    boto3_client("sts").get_caller_identity()
    returned = sum(len(r["Values"]) for r in response["MetricDataResults"])
    status, stats = control(server, "stats")
    assert status == 200
    assert stats == {
        "calls": {"monitoring:GetMetricData": 1, "sts:GetCallerIdentity": 1},
        "metrics_requested": 3,
        "datapoints_returned": returned,
        "faults": {},
    }
    assert stats == server.stats()
    assert control(server, "reset", {}) == (200, {"status": "reset"})
    assert server.stats() == {"calls": {}, "metrics_requested": 0, "datapoints_returned": 0, "faults": {}}


# ---- faults ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_clients_with_retries_get_through_injected_faults(serve, boto3_client, mode):
    # Seed 34 draws every kind of fault within the first calls, so the test stays short.
    server = serve(fault_rate=0.25, seed=34, slow_seconds=0.05)
    config = Config(retries={"mode": mode, "max_attempts": 12})
    sts = boto3_client("sts", config=config)
    cloudwatch = boto3_client("cloudwatch", config=config)
    bedrock = boto3_client("bedrock", config=config)
    for _ in range(6):
        assert sts.get_caller_identity()["Account"] == server.scenario.account_id
        result = cloudwatch.get_metric_data(
            MetricDataQueries=[query("a", "Invocations")], StartTime=NOW - timedelta(minutes=30), EndTime=NOW
        )
        assert len(result["MetricDataResults"][0]["Values"]) == 30
        assert bedrock.list_inference_profiles()["inferenceProfileSummaries"]
    stats = server.stats()
    assert set(stats["faults"]) == {"throttle", "500", "reset", "slow"}
    slowed = stats["faults"]["slow"]
    failed = sum(stats["faults"].values()) - slowed
    assert sum(stats["calls"].values()) == 18 + failed
    assert control(server, "health")[0] == 200


def test_the_fault_sequence_repeats_for_a_seed(serve, boto3_client):
    outcomes = []
    for _ in range(2):
        server = serve(fault_rate=0.5, seed=11, fault_kinds=("throttle", "500"))
        sts = boto3_client("sts", config=NO_RETRIES)
        run = []
        for _ in range(12):
            try:
                sts.get_caller_identity()
                run.append("ok")
            except ClientError as error:
                run.append(error.response["Error"]["Code"])
        outcomes.append(run)
        server.stop()
    assert outcomes[0] == outcomes[1]
    assert {"ok", "ThrottlingException", "InternalFailure"} == set(outcomes[0])


@pytest.mark.parametrize(
    ("service", "call"),
    [
        ("cloudwatch", lambda c: c.list_metrics()),
        ("sts", lambda c: c.get_caller_identity()),
        ("bedrock", lambda c: c.list_inference_profiles()),
        ("service-quotas", lambda c: c.list_service_quotas(ServiceCode="bedrock")),
        ("ec2", lambda c: c.describe_regions()),
        ("account", lambda c: c.list_regions()),
    ],
)
def test_injected_faults_have_each_protocols_error_shape(serve, boto3_client, service, call):
    serve(fault_rate=1.0, fault_kinds=("throttle",))
    client = boto3_client(service, config=NO_RETRIES)
    with pytest.raises(ClientError) as excinfo:
        call(client)
    error = excinfo.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ThrottlingException",
        400,
    )

    server = serve(fault_rate=1.0, fault_kinds=("500",))
    client = boto3_client(service, config=NO_RETRIES)
    with pytest.raises(ClientError) as excinfo:
        call(client)
    error = excinfo.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalFailure", 500)
    # The control endpoints are never faulted.
    assert control(server, "health")[0] == 200
    assert control(server, "stats")[1]["faults"] == {"500": 1}


def test_a_reset_fault_drops_the_connection(serve, boto3_client):
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    server = serve(fault_rate=1.0, fault_kinds=("reset",))
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        boto3_client("sts", config=NO_RETRIES).get_caller_identity()
    assert server.stats()["faults"] == {"reset": 1}


def test_calls_above_the_tps_limit_are_throttled(serve, boto3_client):
    server = serve(tps=2)
    sts = boto3_client("sts", config=NO_RETRIES)
    codes = []
    for _ in range(12):
        try:
            sts.get_caller_identity()
            codes.append("ok")
        except ClientError as error:
            codes.append(error.response["Error"]["Code"])
    assert "ok" in codes and "ThrottlingException" in codes
    assert server.stats()["faults"]["tps"] == codes.count("ThrottlingException")
