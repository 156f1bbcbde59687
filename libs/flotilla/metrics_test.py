"""flotilla.metrics: the token every scrape needs, the bounded labels, and the dashboard's names."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from flotilla.errors import ConfigurationError
from flotilla.lifecycle import GrpcServer
from flotilla.metrics import (
    METRIC_FAMILIES,
    METRIC_NAMES,
    OTHER,
    MetricsServer,
    authorized,
    bounded,
    check_settings,
    serve_metrics,
    wsgi_route,
)

DASHBOARD = Path("deploy/grafana/flotilla.json")
_NAME = re.compile(r"\b((?:flotilla|process|python)_[a-zA-Z0-9_]*)")


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_authorized_needs_the_exact_bearer_token() -> None:
    assert authorized("Bearer s3cret", "s3cret")
    assert authorized("bearer  s3cret ", "s3cret")
    assert not authorized(None, "s3cret")
    assert not authorized("Bearer other", "s3cret")
    assert not authorized("Basic s3cret", "s3cret")
    assert not authorized("Bearer ", "")  # no token configured: nobody is let in


def test_a_metrics_port_without_a_token_does_not_start() -> None:
    with pytest.raises(ConfigurationError, match="FLOTILLA_X_METRICS_TOKEN"):
        check_settings(9999, "", variable="FLOTILLA_X_METRICS_TOKEN")
    check_settings(0, "", variable="FLOTILLA_X_METRICS_TOKEN")  # off: fine
    assert serve_metrics("127.0.0.1", 0, "") is None
    with pytest.raises(ConfigurationError):
        MetricsServer("127.0.0.1", 0, "")


def test_the_server_refuses_a_scrape_without_the_token() -> None:
    server = MetricsServer("127.0.0.1", 0, "s3cret").start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert _get(url)[0] == 401
        assert _get(url, "wrong")[0] == 401
        assert _get(f"http://127.0.0.1:{server.port}/other", "s3cret")[0] == 404
        status, body = _get(url, "s3cret")
        assert status == 200
        names = {sample.name for family in text_string_to_metric_families(body) for sample in family.samples}
        assert "flotilla_runs_started_total" in names or "flotilla_worker_runs_in_flight" in names
    finally:
        server.stop()


def test_labels_stay_bounded() -> None:
    assert bounded("load", {"load", "chat"}) == "load"
    assert bounded("01HZX-some-run-id", {"load"}) == OTHER
    assert wsgi_route("/") == "/"
    assert wsgi_route("/__ui__") == "/__ui__"
    assert wsgi_route("/__flotilla__/ui.css") == "/__flotilla__"
    assert wsgi_route("/runs/01HZX") == OTHER


def test_every_dashboard_expression_names_a_defined_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = METRIC_NAMES | {sample.name for family in REGISTRY.collect() for sample in family.samples}
    drawn: set[str] = set()
    targets = [target for panel in dashboard["panels"] for target in panel["targets"]]
    assert targets
    for target in targets:
        names = set(_NAME.findall(target["expr"]))
        assert names, f"{target['expr']!r} names no metric"
        unknown = names - exposed
        assert not unknown, f"{target['expr']!r} names metrics no code defines: {sorted(unknown)}"
        drawn |= names
    undrawn = {family for family in METRIC_FAMILIES if not any(n.startswith(family) for n in drawn)}
    assert not undrawn, f"metrics the dashboard does not draw: {sorted(undrawn)}"


def _grpc_count(method: str, code: str) -> float:
    labels = {"method": method, "code": code}
    return REGISTRY.get_sample_value("flotilla_grpc_server_handling_seconds_count", labels) or 0.0


def test_every_grpc_call_is_timed_with_its_status_code() -> None:
    check = "/grpc.health.v1.Health/Check"

    async def scenario() -> None:
        server = GrpcServer("127.0.0.1", 0, lambda _: None, ["flotilla.v1.Test"])
        await server.start()
        await server.set_serving(True)
        try:
            ok, not_found = _grpc_count(check, "OK"), _grpc_count(check, "NOT_FOUND")
            async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                await stub.Check(health_pb2.HealthCheckRequest(service="flotilla.v1.Test"))
                with pytest.raises(aio.AioRpcError) as refused:
                    await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
                assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            assert _grpc_count(check, "OK") == ok + 1
            assert _grpc_count(check, "NOT_FOUND") == not_found + 1
        finally:
            await server.stop(grace_s=0)

    asyncio.run(scenario())
