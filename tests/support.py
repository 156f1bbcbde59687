"""Helpers for integration tests: a local stack on free ports and an API client for it."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.aio.client
import nats.js.errors
import websockets
from prometheus_client.parser import text_string_to_metric_families

from flotilla.devstack import LocalStack, StackConfig
from flotilla.settings import TracingSettings

TEST_WORKFLOWS = "testing_workflows:registry"
SCRIPTED_REPLIES = ["Could you explain that more simply?", "Start with one small example, then generalise."]
USER_SCOPES = ["runs:read", "runs:write", "workflows:read"]
IDENTITIES = {
    "alice": {"name": "alice", "key": "flk_test_alice", "scopes": USER_SCOPES},
    "bob": {"name": "bob", "key": "flk_test_bob", "scopes": USER_SCOPES},
    "reader": {"name": "reader", "key": "flk_test_reader", "scopes": ["runs:read"]},
    "auditor": {"name": "auditor", "key": "flk_test_auditor", "scopes": ["admin"]},
}
JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
JWT_ISSUER = "https://issuer.test"
JWT_AUDIENCE = "flotilla-tests"


@contextmanager
def local_stack(
    *,
    workers: int = 2,
    job_ack_wait_s: float = 30.0,
    job_max_attempts: int = 3,
    env: dict[str, str] | None = None,
    with_ui: bool = False,
    ui_users: list[dict[str, str]] | None = None,
    tls: bool = True,
    max_file_store: str | None = None,
    nats_nodes: int = 1,
    nats_host: str = "127.0.0.1",
    tracing: TracingSettings | None = None,
) -> Iterator[LocalStack]:
    """A fresh stack: real nats-server with the repo's config, real services, free ports; with the
    web UI too when `with_ui` (its sign-in users: `developer` with `stack.config.ui_password`, and
    `ui_users`); `nats_nodes=3`: an R3 cluster; `nats_host`: where NATS listens (a veth address
    for a worker in a network namespace); `tracing`: every service's tracing settings."""
    with tempfile.TemporaryDirectory(prefix="flotilla-test-") as tmp:
        config = StackConfig(
            data_dir=Path(tmp) / "data",
            log_dir=Path(tmp) / "logs",
            workers=workers,
            nats_port=0,
            dispatcher_port=0,
            gateway_port=0,
            gateway_grpc_port=0,
            ui_port=0,
            with_ui=with_ui,
            ui_users=list(ui_users or []),
            job_ack_wait_s=job_ack_wait_s,
            job_max_attempts=job_max_attempts,
            tls=tls,
            max_file_store=max_file_store,
            nats_nodes=nats_nodes,
            nats_host=nats_host,
            tracing=tracing,
            api_keys=list(IDENTITIES.values()),  # type: ignore[arg-type]
            env={
                "FLOTILLA_GATEWAY_JWT_HS256_SECRET": JWT_SECRET,
                "FLOTILLA_GATEWAY_JWT_ISSUER": JWT_ISSUER,
                "FLOTILLA_GATEWAY_JWT_AUDIENCE": JWT_AUDIENCE,
                # Tests poll and start hundreds of runs from one identity; test_limits lowers these.
                "FLOTILLA_GATEWAY_RATE_LIMIT_PER_S": "100000",
                "FLOTILLA_GATEWAY_RATE_LIMIT_BURST": "100000",
                "FLOTILLA_WORKER_WORKFLOWS": TEST_WORKFLOWS,
                "FLOTILLA_LOG_FORMAT": "json",
                # Deterministic agents: the scripted model (each run starts from the first reply).
                "FLOTILLA_LLM_BACKEND": "scripted",
                "FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(SCRIPTED_REPLIES),
                **(env or {}),
            },
        )
        stack = LocalStack(config)
        stack.start()
        try:
            yield stack
        except BaseException:
            print_logs(config.log_dir)  # what the services said, for the failure's report
            raise
        finally:
            stack.stop()


def print_logs(log_dir: Path | None, lines: int = 60) -> None:
    """The last lines of every service's log (pytest shows them with a failure)."""
    for log in sorted(log_dir.glob("*.log")) if log_dir else []:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"----- {log.name} (last {len(tail)} lines) -----", *tail, sep="\n")


class Api:
    """A thin async client of the gateway's v1 API."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        """`token`: a bearer token; None means the stack's developer key (set by `for_stack`)."""
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30.0, headers=headers)
        self.client_errors: list[dict[str, Any]] = []
        """`client_error` frames streams got (the server's answer to a frame a stream sent)."""

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def start(self, workflow: str, **params: Any) -> str:
        response = await self.http.post("/v1/runs", json={"workflow": workflow, "params": params})
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    async def run(self, run_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def settled(self, run_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """The run's record once it is final. A worker writes the record right after the log's
        terminal event, so a client that saw the stream end may read `running` for a moment."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            run = await self.run(run_id)
            if run["status"] not in ("queued", "running") or asyncio.get_running_loop().time() > deadline:
                return run
            await asyncio.sleep(0.05)

    async def events(self, run_id: str, after: int = 0, *, hidden: bool = True) -> list[dict[str, Any]]:
        """Every stored event after `after`, page by page; with the hidden ones unless `hidden=False`
        (tests compare whole logs; the API's default leaves them out)."""
        events: list[dict[str, Any]] = []
        while True:
            params: dict[str, str | int] = {"after": after, "include_hidden": str(hidden).lower()}
            response = await self.http.get(f"/v1/runs/{run_id}/events", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            events.extend(page["events"])
            if not page["more"]:
                return events
            after = page["next_after"]

    async def answer(self, run_id: str, request_id: str, value: str) -> httpx.Response:
        return await self.http.post(f"/v1/runs/{run_id}/input", json={"request_id": request_id, "value": value})

    async def stream(
        self,
        run_id: str,
        *,
        after: int = 0,
        answer: Callable[[dict[str, Any]], str | None] | None = None,
        timeout_s: float = 60.0,
        hidden: bool = True,
        received: list[dict[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Every event over the WebSocket until the server closes (hidden ones too unless
        `hidden=False`); answers questions over the same socket with `answer(event)`. Returns the
        events and the close code. Events are appended to `received` as they arrive, so a caller
        running this as a task can wait for the stream to reach a point."""
        received = [] if received is None else received
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        query = f"after={after}&include_hidden={str(hidden).lower()}"
        async with websockets.connect(
            f"{self.ws_url}/v1/runs/{run_id}/stream?{query}", additional_headers=headers, max_size=None
        ) as ws:

            async def consume() -> None:
                async for frame in ws:
                    message = json.loads(frame)
                    if message.get("type") == "client_error":
                        # The server's word on a frame we sent (e.g. an answer to a question a
                        # replayed log shows, answered already): kept apart from the run's events.
                        self.client_errors.append(message)
                        continue
                    received.append(message)
                    if answer and message.get("type") in ("text_input", "multiple_choice"):
                        value = answer(message)
                        if value is not None:
                            # A question replayed from the log may already be answered, and the
                            # run finished and the stream closed meanwhile: no answer was needed.
                            with suppress(websockets.exceptions.ConnectionClosedOK):
                                await ws.send(
                                    json.dumps({"type": "input", "request_id": message["request_id"], "value": value})
                                )

            await asyncio.wait_for(consume(), timeout_s)
            return received, ws.close_code or 0

    async def wait_for(
        self, run_id: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll the run's events until `predicate` holds (tests only; clients should stream)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            events = await self.events(run_id)
            if predicate(events):
                return events
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; events so far: {[e['type'] for e in events]}")
            await asyncio.sleep(0.05)


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = 30.0, every_s: float = 0.05
) -> None:
    """Wait for `condition` (a plain or async predicate) to hold; fail naming `what` if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"{what}: not so after {timeout_s} s"
        await asyncio.sleep(every_s)


def assert_well_formed(run_id: str, events: list[dict[str, Any]]) -> None:
    """Own run only, seq 1..N with no gap or repeat, exactly one workflow_completed, last."""
    assert all(e["run_id"] == run_id for e in events), "an event of another run leaked in"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), [e["seq"] for e in events]
    completed = [e for e in events if e["type"] == "workflow_completed"]
    assert len(completed) == 1 and events[-1]["type"] == "workflow_completed"


def first_question(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    answered = {e["request_id"] for e in events if e["type"] == "input_answered"}
    for event in events:
        if event["type"] in ("text_input", "multiple_choice") and event["request_id"] not in answered:
            return event
    return None


async def admin(stack: LocalStack) -> nats.aio.client.Client:
    """A NATS connection with the operator's credentials (to inspect or break things)."""
    return await stack.nats_connect("operator")


FILLER_RUN = "0" * 26
"""A run id no run has: its event subject holds the filler of a store filled on purpose."""


async def fill_store(stack: LocalStack, chunk: int = 1024 * 1024) -> int:
    """Publish to the events stream until JetStream refuses for lack of room (the stream's share
    of the store, or the store itself, is full); how many chunks it took. `empty_store` undoes it."""
    nc = await admin(stack)
    try:
        js = nc.jetstream()
        stored = 0
        while True:
            try:
                await js.publish(f"flotilla.runs.{FILLER_RUN}.events", b"\0" * chunk)
            except nats.js.errors.APIError as exc:
                if exc.err_code not in (10023, 10047, 10077) or not stored:  # store full / stream full
                    raise
                if chunk <= 16:
                    return stored
                chunk //= 8  # fill what is left too: a small event must find no room either
                continue
            stored += 1
    finally:
        await nc.close()


async def empty_store(stack: LocalStack) -> None:
    nc = await admin(stack)
    try:
        await nc.jetstream().purge_stream("FLOTILLA_EVENTS", subject=f"flotilla.runs.{FILLER_RUN}.events")
    finally:
        await nc.close()


def wait_for_log_line(path: Path, text: str, timeout_s: float = 30.0) -> None:
    """Until a process's log file says `text` (how a test knows the process reached a point)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path.name} never said {text!r}")


MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_metrics(stack: LocalStack, service: str) -> MetricSamples:
    """Every sample `service` (a child's name, or "gateway") exposes on its real metrics endpoint,
    read with the stack's metrics token and parsed with prometheus_client's parser."""
    url = stack.metrics_urls()[service]
    response = httpx.get(url, headers={"Authorization": f"Bearer {stack.metrics_token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric_value(samples: MetricSamples, name: str, **labels: str) -> float | None:
    """The sample `name` with exactly these labels, or None when it is not exposed."""
    return samples.get((name, frozenset(labels.items())))
