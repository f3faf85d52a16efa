"""Benchmark: how fast the sandbox serves GetMetricData, and how long it takes to start.

Run with ``.venv/bin/python bench/sandbox_throughput.py [--runs 5] [--metrics 40] [--days 14]``. It prints:

- start-up: constructing and starting ``SandboxServer("demo")`` (scenario load, traffic model, bind), median;
- served: a boto3 CloudWatch client fetches ``--metrics`` metrics at 1-minute period over ``--days`` days in
  pages of 100,800 datapoints, following NextToken, once per wire protocol. botocore serializes and signs every
  request; the answer is read as bytes with only its NextToken picked out, not handed to botocore's
  pure-Python parsers, so the figure is what the server delivers: datapoints returned / wall seconds, median of
  ``--runs``. The first read of each protocol (server result cache empty; the very first also computes the
  traffic model) is printed separately. Then the same with every page decoded by the client (cbor2, json,
  ElementTree);
- for reference, the same first page parsed by botocore itself, which is what bounds an unmodified boto3 caller.

This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import boto3
import botocore.session
import cbor2
from botocore.awsrequest import AWSResponse
from botocore.loaders import Loader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.traffic import METRICS

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PROTOCOLS = ("smithy-rpc-v2-cbor", "json", "query")


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs):
        yield self._body


def cloudwatch_client(protocol: str, data_dir: Path, endpoint: str):
    """A boto3 CloudWatch client loaded from botocore's model restricted to ``protocol``."""
    model = copy.deepcopy(Loader().load_service_model("cloudwatch", "service-2"))
    model["metadata"]["protocol"] = protocol
    model["metadata"]["protocols"] = [protocol]
    target = data_dir / protocol / "cloudwatch" / model["metadata"]["apiVersion"] / "service-2.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(model))
    session = botocore.session.Session()
    session.get_component("data_loader").search_paths.insert(0, str(data_dir / protocol))
    return boto3.session.Session(botocore_session=session).client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def fetch(client, params: dict, decode: bool) -> int:
    """Fetch every page of one GetMetricData read, following NextToken; returns the number of pages.

    With ``decode`` each page is decoded in full (cbor2, json); without, only the NextToken is picked out of the
    bytes, so the time is the server's plus the transfer.
    """
    protocol = client.meta.service_model.resolved_protocol
    empty = {
        "smithy-rpc-v2-cbor": b"\xa0",
        "json": b"{}",
        "query": b"<GetMetricDataResponse><GetMetricDataResult/></GetMetricDataResponse>",
    }[protocol]
    connection: dict[str, http.client.HTTPConnection] = {}
    last: dict[str, bytes] = {}

    def send(request, **kwargs):
        url = urlsplit(request.url)
        if "c" not in connection:
            connection["c"] = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        conn = connection["c"]
        conn.request(request.method, url.path or "/", body=request.body, headers=dict(request.headers))
        last["body"] = conn.getresponse().read()
        return AWSResponse(request.url, 200, {}, _Body(empty))

    client.meta.events.register_first("before-send.cloudwatch.GetMetricData", send)
    pages = 0
    token = None
    try:
        while True:
            client.get_metric_data(**(dict(params, NextToken=token) if token else params))
            pages += 1
            token = _next_token(protocol, last["body"], decode)
            if not token:
                return pages
    finally:
        client.meta.events.unregister("before-send.cloudwatch.GetMetricData", send)
        if "c" in connection:
            connection["c"].close()


def _next_token(protocol: str, body: bytes, decode: bool) -> str | None:
    if protocol == "smithy-rpc-v2-cbor":
        if decode:
            return cbor2.loads(body).get("NextToken")
        at = body.rfind(b"\x69NextToken")
        return None if at < 0 else cbor2.CBORDecoder(io.BytesIO(body[at + 10 :])).decode()
    if protocol == "json":
        if decode:
            return json.loads(body).get("NextToken")
        at = body.rfind(b'"NextToken":"')
        return None if at < 0 else body[at + 13 : body.index(b'"', at + 13)].decode()
    text = body.decode()
    if decode:
        ElementTree.fromstring(text)
    at = text.find("<NextToken>")
    return None if at < 0 else text[at + 11 : text.find("</NextToken>")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--metrics", type=int, default=40)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args(argv)

    startups = []
    for _ in range(3):
        began = time.perf_counter()
        server = SandboxServer("demo", now=NOW).start()
        startups.append(time.perf_counter() - began)
        server.stop()
    print(f"start-up: median {statistics.median(startups):.3f} s over {len(startups)} starts")

    os.environ.pop("AWS_PROFILE", None)
    with SandboxServer("demo", now=NOW) as server, tempfile.TemporaryDirectory() as tmp:
        pairs = [(s.model_id, m) for s in server.traffic.series("us-east-1") for m in METRICS]
        queries = [
            {
                "Id": f"q{i}",
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
            for i, (model_id, metric) in enumerate(pairs[: args.metrics])
        ]
        params = {
            "MetricDataQueries": queries,
            "StartTime": NOW - timedelta(days=args.days),
            "EndTime": NOW,
        }
        print(f"read: {len(queries)} metrics x 1-minute x {args.days} days, pages of up to 100,800 datapoints")
        for protocol in PROTOCOLS:
            client = cloudwatch_client(protocol, Path(tmp), server.endpoint_url)
            for decode in (False, True):
                rates = []
                for run in range(args.runs + 1):
                    if run == 0 and decode:
                        continue
                    # Also drops the server's cached results; the traffic model keeps its own day blocks, so only
                    # the very first read (first protocol) computes the traffic from scratch.
                    server.reset_stats()
                    began = time.perf_counter()
                    pages = fetch(client, params, decode)
                    elapsed = time.perf_counter() - began
                    datapoints = server.stats()["datapoints_returned"]
                    if run == 0:
                        print(
                            f"  {protocol:>18}: first read {datapoints:,} datapoints in {pages} pages, {elapsed:.2f} s "
                            f"({datapoints / elapsed:,.0f}/s)"
                        )
                        continue
                    rates.append(datapoints / elapsed)
                what = "served and decoded by the client" if decode else "served (bytes to the client)"
                print(
                    f"  {protocol:>18}: {what}: {statistics.median(rates):,.0f} datapoints/s (median of {len(rates)})"
                )

        for protocol in ("smithy-rpc-v2-cbor", "json"):
            client = cloudwatch_client(protocol, Path(tmp), server.endpoint_url)
            began = time.perf_counter()
            page = client.get_metric_data(**params)
            elapsed = time.perf_counter() - began
            datapoints = sum(len(r["Values"]) for r in page["MetricDataResults"])
            print(
                f"  {protocol:>18}: one page parsed by botocore: {datapoints:,} datapoints in {elapsed:.2f} s "
                f"({datapoints / elapsed:,.0f} datapoints/s; botocore's parser is the bound for plain boto3)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
