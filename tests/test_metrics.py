"""Prometheus metrics against the real stack: every service's real /metrics endpoint, scraped over
HTTP and parsed with prometheus_client's text parser, after real runs; and scrapes without the
metrics token refused by each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest

from flotilla.devstack import LocalStack
from support import Api, MetricSamples as Samples, local_stack, metric_value as value, scrape_metrics as scrape


@pytest.fixture(scope="module")
def metrics_stack() -> Iterator[LocalStack]:
    # One worker, so the worker that ran the runs is the one scraped; the UI, to scrape it too.
    with local_stack(workers=1, with_ui=True) as stack:
        yield stack


def total(samples: Samples, name: str, match: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
    """The sum of the `name` samples whose labels `match`."""
    return sum(v for (n, labels), v in samples.items() if n == name and match(dict(labels)))


async def settle(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait until `check()` holds (counters move just after what a client sees)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the metrics to move")
        await asyncio.sleep(0.2)


def test_every_service_serves_metrics_that_move_with_runs(metrics_stack: LocalStack) -> None:
    stack = metrics_stack
    assert set(stack.metrics_urls()) == {"dispatcher", "worker-1", "gateway", "ui"}
    streams_while_asking: list[float | None] = []
    in_flight_while_asking: list[float | None] = []

    def answer(question: dict[str, object]) -> str:
        # The question is on the open WebSocket: the gateway counts that stream now, and the
        # worker holds the run while it waits for the answer.
        streams_while_asking.append(value(scrape(stack, "gateway"), "flotilla_gateway_streams_open", protocol="v1"))
        in_flight_while_asking.append(value(scrape(stack, "worker-1"), "flotilla_worker_runs_in_flight"))
        return "yes"

    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=3, size=10, asks=1)
            events, close_code = await api.stream(run_id, answer=answer)
            assert close_code == 1000 and events[-1]["status"] == "completed"
            chat_id = await api.start("learning_chat", turns=1)
            events, close_code = await api.stream(chat_id, answer=lambda q: "Physics")
            assert close_code == 1000 and events[-1]["status"] == "completed"

        assert streams_while_asking == [1.0]
        assert in_flight_while_asking == [1.0]

        # dispatcher: runs started, the queue's gauges, gRPC latency of StartRun
        dispatcher = scrape(stack, "dispatcher")
        assert value(dispatcher, "flotilla_runs_started_total", workflow="load") == 1.0
        assert value(dispatcher, "flotilla_runs_started_total", workflow="learning_chat") == 1.0
        start_run = "/flotilla.v1.Dispatcher/StartRun"
        assert (
            total(
                dispatcher,
                "flotilla_grpc_server_handling_seconds_count",
                lambda labels: labels == {"method": start_run, "code": "OK"},
            )
            == 2.0
        )
        await settle(lambda: value(scrape(stack, "dispatcher"), "flotilla_jobs_pending", state="pending") is not None)

        # worker: runs finished, first events, waiting on people, LLM calls, nothing left in flight
        def worker_finished() -> bool:
            samples = scrape(stack, "worker-1")
            return value(samples, "flotilla_runs_finished_total", workflow="learning_chat", status="completed") == 1.0

        await settle(worker_finished)
        worker = scrape(stack, "worker-1")
        assert value(worker, "flotilla_runs_finished_total", workflow="load", status="completed") == 1.0
        assert value(worker, "flotilla_worker_runs_in_flight") == 0.0
        assert value(worker, "flotilla_run_first_event_seconds_count", workflow="load") == 1.0
        assert value(worker, "flotilla_run_input_wait_seconds_count") == 2.0  # one question each
        assert total(worker, "flotilla_llm_calls_total", lambda labels: labels["outcome"] == "ok") >= 1.0
        assert total(worker, "flotilla_llm_call_seconds_count") >= 1.0
        assert total(worker, "flotilla_dead_letters_total") == 0.0

        # gateway: HTTP latency by route template (never the raw path), the stream closed again
        gateway = scrape(stack, "gateway")
        starts = total(
            gateway,
            "flotilla_http_request_duration_seconds_count",
            lambda labels: (labels["method"] == "POST" and labels["route"] == "/v1/runs"),
        )
        assert starts == 2.0
        routes = {
            labels["route"]
            for (name, labels_set), _ in gateway.items()
            if name.endswith("_count")
            for labels in [dict(labels_set)]
            if "route" in labels
        }
        assert not any(run_id in route or chat_id in route for route in routes)
        await settle(lambda: value(scrape(stack, "gateway"), "flotilla_gateway_streams_open", protocol="v1") == 0.0)

        # UI: its page served and timed
        assert httpx.get(stack.ui_url + "/", timeout=30).status_code == 200
        ui = scrape(stack, "ui")
        assert total(ui, "flotilla_http_request_duration_seconds_count", lambda labels: labels["route"] == "/") >= 1.0

    asyncio.run(scenario())


def test_a_scrape_without_the_metrics_token_is_refused(metrics_stack: LocalStack) -> None:
    stack = metrics_stack
    urls = stack.metrics_urls()
    assert len(urls) == 4
    for service, url in urls.items():
        assert httpx.get(url, timeout=10).status_code == 401, service
        wrong = {"Authorization": "Bearer not-the-token"}
        assert httpx.get(url, headers=wrong, timeout=10).status_code == 401, service
        api_key = {"Authorization": f"Bearer {stack.dev_api_key}"}  # an API key is not a metrics token
        assert httpx.get(url, headers=api_key, timeout=10).status_code == 401, service
        right = {"Authorization": f"Bearer {stack.metrics_token}"}
        assert httpx.get(url, headers=right, timeout=10).status_code == 200, service
