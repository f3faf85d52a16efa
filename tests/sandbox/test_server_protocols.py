"""Wire protocols of the sandbox: CloudWatch over CBOR, JSON and query; errors as botocore parses them; routing.

botocore 1.44 resolves CloudWatch to awsJson 1.0 (its preference order puts ``json`` before
``smithy-rpc-v2-cbor``); other SDKs and older botocore send CBOR or query. A client is forced onto one protocol
by loading it from a copy of botocore's own CloudWatch model that lists only that protocol (see
:func:`cloudwatch_client`), the same mechanism as ``AWS_DATA_PATH``.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import boto3
import botocore.session
import cbor2
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.loaders import Loader

from pipelines.sandbox.server import SandboxServer

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BUSY = "1mkpeoqmauub"
PATCHY = "aqqhh7y183ua"
CLOUDWATCH_PROTOCOLS = ("smithy-rpc-v2-cbor", "json", "query")


@pytest.fixture(scope="module")
def protocol_models(tmp_path_factory):
    """A data directory per protocol holding botocore's CloudWatch model restricted to that protocol."""
    original = Loader().load_service_model("cloudwatch", "service-2")
    version = original["metadata"]["apiVersion"]
    roots = {}
    for protocol in CLOUDWATCH_PROTOCOLS:
        model = copy.deepcopy(original)
        model["metadata"]["protocol"] = protocol
        model["metadata"]["protocols"] = [protocol]
        root = tmp_path_factory.mktemp(protocol.replace("-", "_"))
        target = root / "cloudwatch" / version / "service-2.json"
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(model))
        roots[protocol] = root
    return roots


@pytest.fixture
def cloudwatch_client(aws_env, protocol_models):
    """``cloudwatch_client(protocol)``: a boto3 CloudWatch client that speaks only ``protocol``."""

    def make(protocol, **kwargs):
        session = botocore.session.Session()
        session.get_component("data_loader").search_paths.insert(0, str(protocol_models[protocol]))
        client = boto3.session.Session(botocore_session=session).client("cloudwatch", region_name="us-east-1", **kwargs)
        assert client.meta.service_model.resolved_protocol == protocol
        return client

    return make


def query(query_id, metric, model_id, stat="Sum", period=60):
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/Bedrock",
                "MetricName": metric,
                "Dimensions": [{"Name": "ModelId", "Value": model_id}],
            },
            "Period": period,
            "Stat": stat,
        },
    }


def capture_bodies(client):
    """Collect the raw response body of every call the client makes (botocore's before-parse event)."""
    bodies = []

    def keep(response_dict, **kwargs):
        bodies.append(response_dict["body"])

    client.meta.events.register("before-parse", keep)
    return bodies


def error_of(excinfo):
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


# ---- CloudWatch in three protocols -----------------------------------------------------------------------


def test_botocore_resolves_cloudwatch_to_a_protocol_the_sandbox_speaks(boto3_client):
    client = boto3_client("cloudwatch")
    assert client.meta.service_model.resolved_protocol in CLOUDWATCH_PROTOCOLS


def test_get_metric_data_is_the_same_in_every_protocol(cloudwatch_client):
    params = {
        "MetricDataQueries": [
            query("inv", "Invocations", PATCHY),
            query("lat", "InvocationLatency", BUSY, "Average"),
        ],
        "StartTime": NOW - timedelta(hours=3),
        "EndTime": NOW,
        "LabelOptions": {"Timezone": "-0500"},
    }
    answers = {}
    for protocol in CLOUDWATCH_PROTOCOLS:
        pages = cloudwatch_client(protocol).get_paginator("get_metric_data")
        answers[protocol] = [
            [(r["Id"], r["Label"], r["Timestamps"], r["Values"], r["StatusCode"]) for r in page["MetricDataResults"]]
            for page in pages.paginate(PaginationConfig={"PageSize": 100}, **params)
        ]
    assert len(answers["json"]) > 1
    assert answers["smithy-rpc-v2-cbor"] == answers["json"] == answers["query"]
    assert sum(len(r[3]) for page in answers["json"] for r in page) > 100


def test_list_metrics_is_the_same_in_every_protocol(cloudwatch_client):
    listings = [
        cloudwatch_client(p).list_metrics(Namespace="AWS/Bedrock", MetricName="Invocations")["Metrics"]
        for p in CLOUDWATCH_PROTOCOLS
    ]
    assert listings[0] and listings[0] == listings[1] == listings[2]


@pytest.mark.parametrize("protocol", CLOUDWATCH_PROTOCOLS)
def test_cloudwatch_errors_carry_the_query_error_code_in_every_protocol(cloudwatch_client, protocol):
    client = cloudwatch_client(protocol)
    too_many = [query(f"q{i}", "Invocations", BUSY) for i in range(501)]
    with pytest.raises(ClientError) as excinfo:
        client.get_metric_data(MetricDataQueries=too_many, StartTime=NOW - timedelta(hours=1), EndTime=NOW)
    assert error_of(excinfo)[:2] == ("InvalidParameterValue", 400)
    assert type(excinfo.value).__name__ == "InvalidParameterValueException"
    with pytest.raises(ClientError) as excinfo:
        client.get_metric_data(
            MetricDataQueries=[query("Bad", "Invocations", BUSY)],
            StartTime=NOW - timedelta(hours=1),
            EndTime=NOW,
        )
    assert error_of(excinfo)[:2] == ("ValidationError", 400)
    with pytest.raises(ClientError) as excinfo:
        client.describe_alarms()
    code, status, message = error_of(excinfo)
    assert code == ("InvalidAction" if protocol == "query" else "UnknownOperationException")
    assert status == 400
    assert "monitoring:DescribeAlarms" in message


def test_cbor_answers_carry_timestamps_as_tag_1_epoch_seconds(cloudwatch_client):
    client = cloudwatch_client("smithy-rpc-v2-cbor")
    bodies = capture_bodies(client)
    parsed = client.get_metric_data(
        MetricDataQueries=[query("inv", "Invocations", BUSY)],
        StartTime=NOW - timedelta(minutes=5),
        EndTime=NOW,
    )
    raw = cbor2.loads(bodies[-1])
    stamps = raw["MetricDataResults"][0]["Timestamps"]
    assert stamps == parsed["MetricDataResults"][0]["Timestamps"]
    assert all(isinstance(s, datetime) for s in stamps)
    # Tag 1 (0xc1) followed by a float64 (0xfb) epoch-seconds value, as the rpc-v2-cbor spec asks.
    assert bytes([0xC1, 0xFB]) + cbor2.dumps(stamps[0].timestamp())[1:] in bodies[-1]


# ---- determinism -----------------------------------------------------------------------------------------


def test_the_same_request_gets_byte_identical_answers(boto3_client, cloudwatch_client, sandbox, monkeypatch):
    params = {
        "MetricDataQueries": [query("tok", "OutputTokenCount", PATCHY), query("inv", "Invocations", BUSY)],
        "StartTime": NOW - timedelta(days=2),
        "EndTime": NOW,
        "MaxDatapoints": 1000,
    }
    clients = [boto3_client("cloudwatch"), cloudwatch_client("smithy-rpc-v2-cbor"), boto3_client("bedrock")]
    first = [capture_bodies(c) for c in clients]
    for _ in range(2):
        clients[0].get_metric_data(**params)
        clients[1].get_metric_data(**params)
        clients[2].list_inference_profiles(typeEquals="APPLICATION")
    for bodies in first:
        assert len(bodies) == 2 and bodies[0] == bodies[1]

    # A second server for the same scenario, seed and clock answers with the same bytes.
    with SandboxServer("demo", seed=0, now=NOW) as twin:
        monkeypatch.setenv("AWS_ENDPOINT_URL", twin.endpoint_url)
        client = boto3_client("cloudwatch")
        bodies = capture_bodies(client)
        client.get_metric_data(**params)
    assert bodies[0] == first[0][0]
    assert twin.endpoint_url != sandbox.endpoint_url


def test_another_seed_gives_other_traffic(boto3_client, monkeypatch):
    params = {
        "MetricDataQueries": [query("tok", "OutputTokenCount", PATCHY)],
        "StartTime": NOW - timedelta(days=1),
        "EndTime": NOW,
    }
    answers = []
    for seed in (0, 1):
        with SandboxServer("demo", seed=seed, now=NOW) as server:
            monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
            answers.append(boto3_client("cloudwatch").get_metric_data(**params)["MetricDataResults"][0]["Values"])
    assert answers[0] and answers[1] and answers[0] != answers[1]


# ---- routing and errors of other services -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "call", "code", "name"),
    [
        ("logs", lambda c: c.describe_destinations(), "UnknownOperationException", "logs:DescribeDestinations"),
        (
            "bedrock-runtime",
            lambda c: c.invoke_model(modelId="amazon.nova-lite-v1:0", body=b"{}"),
            "UnknownOperationException",
            "bedrock-runtime:InvokeModel",
        ),
        (
            "bedrock",
            lambda c: c.list_guardrails(),
            "UnknownOperationException",
            "bedrock:ListGuardrails",
        ),
        (
            "sts",
            lambda c: c.assume_role(RoleArn="arn:aws:iam::123456789012:role/x", RoleSessionName="sandbox"),
            "InvalidAction",
            "sts:AssumeRole",
        ),
        ("ec2", lambda c: c.describe_instances(), "InvalidAction", "ec2:DescribeInstances"),
        (
            "service-quotas",
            lambda c: c.list_services(),
            "UnknownOperationException",
            "servicequotas:ListServices",
        ),
        ("dynamodb", lambda c: c.list_tables(), "UnknownOperationException", "dynamodb:ListTables"),
        ("s3", lambda c: c.list_buckets(), "UnknownOperationException", "s3:ListBuckets"),
    ],
)
def test_operations_the_sandbox_lacks_get_an_error_that_names_them(boto3_client, service, call, code, name):
    client = boto3_client(service, config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as excinfo:
        call(client)
    got_code, status, message = error_of(excinfo)
    assert (got_code, status) == (code, 400)
    assert f"The sandbox does not implement {name}" in message


def test_a_request_without_sigv4_is_refused(sandbox):
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(sandbox.endpoint_url + "/inference-profiles", timeout=10)
    assert excinfo.value.code == 403
    assert excinfo.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationToken"


def test_modeled_errors_have_the_aws_status_and_class(boto3_client):
    bedrock = boto3_client("bedrock")
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException) as excinfo:
        bedrock.get_inference_profile(inferenceProfileIdentifier="nosuchprofile")
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)
    quotas = boto3_client("service-quotas")
    with pytest.raises(quotas.exceptions.NoSuchResourceException) as excinfo:
        quotas.get_service_quota(ServiceCode="bedrock", QuotaCode="L-00000000")
    assert error_of(excinfo)[:2] == ("NoSuchResourceException", 400)


def test_a_region_aws_does_not_have_is_refused_and_a_real_empty_region_answers_empty(boto3_client):
    with pytest.raises(ClientError) as excinfo:
        boto3_client("bedrock", region="moon-east-1").list_inference_profiles()
    code, status, message = error_of(excinfo)
    assert (code, status) == ("InvalidRegion", 400)
    assert "moon-east-1" in message
    empty = boto3_client("bedrock", region="eu-west-1")
    assert empty.list_inference_profiles()["inferenceProfileSummaries"] == []
    assert empty.list_foundation_models()["modelSummaries"] == []


# ---- IAM policy and rejected credentials ------------------------------------------------------------------

ACCOUNT_ARN = "arn:aws:iam::{account}:user/sandbox"
ONLY_BEDROCK_LISTS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["bedrock:List*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "bedrock:ListTagsForResource", "Resource": "*"},
    ],
}


@pytest.fixture
def guarded(monkeypatch, aws_env):
    """``guarded(policy=..., reject_credentials=...)``: a demo sandbox with those options, AWS_ENDPOINT_URL on it."""
    started = []

    def start(**options):
        server = SandboxServer("demo", now=NOW, **options).start()
        started.append(server)
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
        return server

    yield start
    for server in started:
        server.stop()


def denial(action, account):
    return (
        f"User: {ACCOUNT_ARN.format(account=account)} is not authorized to perform: {action} because no "
        f"identity-based policy allows the {action} action"
    )


@pytest.mark.parametrize("protocol", CLOUDWATCH_PROTOCOLS)
def test_a_policy_denies_cloudwatch_as_aws_does_in_every_protocol(guarded, cloudwatch_client, protocol):
    server = guarded(policy=ONLY_BEDROCK_LISTS)
    client = cloudwatch_client(protocol)
    with pytest.raises(ClientError) as excinfo:
        client.get_metric_data(
            MetricDataQueries=[query("q", "Invocations", BUSY)], StartTime=NOW - timedelta(hours=1), EndTime=NOW
        )
    assert error_of(excinfo) == ("AccessDenied", 403, denial("cloudwatch:GetMetricData", server.scenario.account_id))


def test_a_policy_denies_bedrock_and_service_quotas_with_their_modeled_errors(guarded, boto3_client):
    server = guarded(
        policy={"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "bedrock:ListFoundation*"}}
    )
    account = server.scenario.account_id
    bedrock = boto3_client("bedrock")
    assert bedrock.list_foundation_models()["modelSummaries"]
    with pytest.raises(bedrock.exceptions.AccessDeniedException) as excinfo:
        bedrock.list_inference_profiles()
    assert error_of(excinfo) == ("AccessDeniedException", 403, denial("bedrock:ListInferenceProfiles", account))
    quotas = boto3_client("service-quotas")
    with pytest.raises(quotas.exceptions.AccessDeniedException) as excinfo:
        quotas.list_service_quotas(ServiceCode="bedrock")
    assert error_of(excinfo)[::2] == ("AccessDeniedException", denial("servicequotas:ListServiceQuotas", account))
    ec2 = boto3_client("ec2")
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_regions()
    code, status, message = error_of(excinfo)
    assert (code, status) == ("UnauthorizedOperation", 403)
    assert message.endswith(denial("ec2:DescribeRegions", account))


def test_wildcards_allow_and_an_explicit_deny_wins(guarded, boto3_client):
    server = guarded(policy=json.dumps(ONLY_BEDROCK_LISTS))
    bedrock = boto3_client("bedrock")
    assert bedrock.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    arn = bedrock.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"][0]
    with pytest.raises(bedrock.exceptions.AccessDeniedException) as excinfo:
        bedrock.list_tags_for_resource(resourceARN=arn["inferenceProfileArn"])
    assert error_of(excinfo)[2] == (
        f"User: {ACCOUNT_ARN.format(account=server.scenario.account_id)} is not authorized to perform: "
        "bedrock:ListTagsForResource with an explicit deny in an identity-based policy"
    )
    # Not a List* action, so nothing allows it.
    with pytest.raises(bedrock.exceptions.AccessDeniedException):
        bedrock.get_inference_profile(inferenceProfileIdentifier=arn["inferenceProfileId"])


def test_get_caller_identity_needs_no_permission(guarded, boto3_client, tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Get*"}]}))
    server = guarded(policy=path)
    assert boto3_client("sts").get_caller_identity()["Account"] == server.scenario.account_id
    with pytest.raises(ClientError) as excinfo:
        boto3_client("account").list_regions()
    assert error_of(excinfo)[:2] == ("AccessDeniedException", 403)


EXPIRED = "The security token included in the request is expired"
INVALID = "The security token included in the request is invalid."


@pytest.mark.parametrize(
    ("kind", "cloudwatch_code", "json_code", "message"),
    [
        ("expired", "ExpiredToken", "ExpiredTokenException", EXPIRED),
        ("invalid", "InvalidClientTokenId", "UnrecognizedClientException", INVALID),
    ],
)
def test_rejected_credentials_fail_every_call_as_aws_words_it(
    guarded, cloudwatch_client, boto3_client, kind, cloudwatch_code, json_code, message
):
    guarded(reject_credentials=kind)
    no_retries = Config(retries={"total_max_attempts": 1})
    for protocol in CLOUDWATCH_PROTOCOLS:
        with pytest.raises(ClientError) as excinfo:
            cloudwatch_client(protocol, config=no_retries).list_metrics(Namespace="AWS/Bedrock")
        assert error_of(excinfo) == (cloudwatch_code, 403, message), protocol
    with pytest.raises(ClientError) as excinfo:
        boto3_client("sts", config=no_retries).get_caller_identity()
    assert error_of(excinfo) == (cloudwatch_code, 403, message)
    with pytest.raises(ClientError) as excinfo:
        boto3_client("bedrock", config=no_retries).list_foundation_models()
    assert error_of(excinfo) == (json_code, 403, message)
    with pytest.raises(ClientError) as excinfo:
        boto3_client("service-quotas", config=no_retries).list_service_quotas(ServiceCode="bedrock")
    assert error_of(excinfo) == (json_code, 400, message)
    with pytest.raises(ClientError) as excinfo:
        boto3_client("ec2", config=no_retries).describe_regions()
    assert error_of(excinfo)[0] == ("RequestExpired" if kind == "expired" else "AuthFailure")


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ({"Version": "2012-10-17"}, "has no Statement"),
        ({"Statement": [{"Effect": "Permit", "Action": "s3:*"}]}, "Effect 'Permit'"),
        ({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Condition": {}}]}, "has Condition"),
        ({"Statement": [{"Effect": "Allow", "Action": "GetMetricData"}]}, "is not an action"),
    ],
)
def test_a_policy_the_sandbox_cannot_evaluate_is_refused(document, complaint):
    from pipelines.sandbox.auth import PolicyError

    with pytest.raises(PolicyError, match=complaint):
        SandboxServer("demo", now=NOW, policy=document)
