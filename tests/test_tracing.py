"""OpenTelemetry traces against the real stack: a real OTLP/gRPC receiver (opentelemetry-proto's
TraceService, served by grpcio on a free port) collects what every service exports; runs started
through the public API must each be one trace, gateway → dispatcher → worker attempt → LLM calls,
linked by span and parent ids, with each process's service name, and the run's log lines must
carry the trace id. A start from the UI's gateway client is one trace from the person's action
on; a job the dispatcher's upkeep queues again joins its run's trace. With tracing off, nothing
is exported and runs work as before."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from flotilla import tracing
from flotilla.devstack import LocalStack
from flotilla.jetstream import JOBS_STREAM, has_job, job_subject
from flotilla.protocol import RunStatus
from flotilla.settings import TracingSettings
from flotilla.ui.gateway import Credentials, GatewayClient
from support import Api, admin, local_stack


@dataclass
class Span:
    service: str
    instance: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()

    def Export(  # noqa: N802  (the protocol's name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            service=resource.get("service.name", ""),
                            instance=resource.get("service.instance.id", ""),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def snapshot(self) -> list[Span]:
        with self._lock:
            return list(self.spans)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    collected = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collected, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield collected, port
    finally:
        server.stop(grace=None)


def _log_lines(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    assert stack.config.log_dir is not None
    path = Path(stack.config.log_dir) / f"{name}.log"
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


async def _run_both(stack: LocalStack) -> tuple[str, str]:
    """`load` with a question answered, `learning_chat` on the scripted model, via the public API."""
    async with Api(stack.gateway_url, stack.dev_api_key) as api:
        load_id = await api.start("load", n=3, size=10, asks=1)
        events, code = await api.stream(load_id, answer=lambda q: "yes")
        assert code == 1000 and events[-1]["status"] == "completed"
        chat_id = await api.start("learning_chat", turns=1)
        events, code = await api.stream(chat_id, answer=lambda q: "Physics")
        assert code == 1000 and events[-1]["status"] == "completed"
        await api.settled(load_id)
        await api.settled(chat_id)
    return load_id, chat_id


def _attempt(spans: list[Span], run_id: str) -> Span:
    found = [s for s in spans if s.name == "run attempt" and s.attributes.get("flotilla.run_id") == run_id]
    assert len(found) == 1, f"attempt spans of {run_id}: {found}"
    return found[0]


def _wait_for(receiver: Receiver, run_ids: list[str], timeout_s: float = 30.0, *, llm: bool = True) -> list[Span]:
    """Spans until each run's attempt and its start's gateway request are in (batches flush each second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = receiver.snapshot()
        attempts = [s for s in spans if s.name == "run attempt" and s.attributes.get("flotilla.run_id") in run_ids]
        traces = {s.trace_id for s in attempts}
        roots = [s for s in spans if s.trace_id in traces and not s.parent_id]
        llm_calls = [s for s in spans if s.name.startswith("chat ") and s.trace_id in traces]
        if len(attempts) == len(run_ids) and len(roots) == len(run_ids) and (llm_calls or not llm):
            time.sleep(1.5)  # one more export interval: the rest of those traces
            return receiver.snapshot()
        assert time.monotonic() < deadline, f"spans so far: {[(s.service, s.name) for s in spans]}"
        time.sleep(0.2)


def _start_chain(spans: list[Span], attempt: Span, request_name: str = "POST /v1/runs") -> tuple[Span, Span, Span]:
    """worker attempt ← dispatcher's StartRun ← the gateway's gRPC call ← the gateway's request
    (FastAPI's own spans of the endpoint may sit between the last two): checked, and returned."""
    by_id = {s.span_id: s for s in spans}
    dispatcher = by_id[attempt.parent_id]
    assert (dispatcher.service, dispatcher.name) == ("dispatcher", "flotilla.v1.Dispatcher/StartRun")
    assert dispatcher.kind == SpanProto.SPAN_KIND_SERVER
    call = by_id[dispatcher.parent_id]
    assert (call.service, call.name, call.kind) == (
        "gateway",
        "flotilla.v1.Dispatcher/StartRun",
        SpanProto.SPAN_KIND_CLIENT,
    )
    request = by_id[call.parent_id]
    while request.kind == SpanProto.SPAN_KIND_INTERNAL and request.service == "gateway":
        request = by_id[request.parent_id]
    assert (request.service, request.name, request.kind) == ("gateway", request_name, SpanProto.SPAN_KIND_SERVER)
    assert {s.trace_id for s in (attempt, dispatcher, call, request)} == {attempt.trace_id}
    return dispatcher, call, request


def test_a_run_start_is_one_trace_from_the_gateway_to_each_llm_call(
    receiver: tuple[Receiver, int], tmp_path: Path
) -> None:
    collected, port = receiver
    tracing = TracingSettings(otlp_endpoint=f"http://127.0.0.1:{port}")
    with local_stack(workers=1, job_ack_wait_s=2.0, tracing=tracing) as stack:
        load_id, chat_id = asyncio.run(_run_both(stack))
        spans = _wait_for(collected, [load_id, chat_id])
        by_id = {s.span_id: s for s in spans}

        for run_id in (load_id, chat_id):
            attempt = _attempt(spans, run_id)
            assert attempt.service == "worker" and attempt.instance == "worker-1"
            assert attempt.kind == SpanProto.SPAN_KIND_CONSUMER
            assert attempt.attributes["flotilla.workflow"] in ("load", "learning_chat")
            _, _, request = _start_chain(spans, attempt)
            assert request.parent_id == ""  # the trace's root
            # One trace per run start: every span of it shares the trace id and has one root.
            trace = [s for s in spans if s.trace_id == attempt.trace_id]
            assert [s.span_id for s in trace if not s.parent_id] == [request.span_id]
            assert all(s.parent_id in by_id for s in trace if s.parent_id), "a span's parent was not exported"
            assert {s.service for s in trace} == {"gateway", "dispatcher", "worker"}

            # The run's log lines carry its trace id: the dispatcher's while it queues the run, and
            # every line the worker logs for the run.
            queued = [
                line
                for line in _log_lines(stack, "dispatcher")
                if line.get("run_id") == run_id and line["event"] == "run queued"
            ]
            assert [line.get("trace_id") for line in queued] == [attempt.trace_id]
            worker_lines = [line for line in _log_lines(stack, "worker-1") if line.get("run_id") == run_id]
            assert {"run started", "run finished"} <= {line["event"] for line in worker_lines}
            assert {line.get("trace_id") for line in worker_lines} == {attempt.trace_id}

        # learning_chat's LLM calls: children of its attempt, with the model and the tokens.
        chat = _attempt(spans, chat_id)
        llm_calls = [s for s in spans if s.parent_id == chat.span_id and s.name.startswith("chat ")]
        assert llm_calls, [s.name for s in spans if s.trace_id == chat.trace_id]
        for llm in llm_calls:
            assert llm.service == "worker" and llm.kind == SpanProto.SPAN_KIND_CLIENT
            assert llm.attributes["gen_ai.request.model"] == "scripted"
            assert llm.attributes["gen_ai.usage.input_tokens"] >= 0
            assert "gen_ai.usage.output_tokens" in llm.attributes
        load = _attempt(spans, load_id)
        assert not [s for s in spans if s.parent_id == load.span_id and s.name.startswith("chat ")]
        # Traces start only at the gateway's requests: the readiness probes' calls to the
        # dispatcher (the stack polled /readyz at start) start none.
        roots = {(s.service, s.kind) for s in spans if not s.parent_id}
        assert roots == {("gateway", SpanProto.SPAN_KIND_SERVER)}, [
            (s.service, s.name) for s in spans if not s.parent_id
        ]

        # A tool call (an AG2 tool, approved by the person) is a span of its own in the attempt.
        async def tool_run() -> str:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("ag2_tool_approval")
                events, _ = await api.stream(run_id, answer=lambda q: "approve")
                assert events[-1]["status"] == "completed", events[-1]
                return run_id

        tool_id = asyncio.run(tool_run())
        spans = _wait_for(collected, [tool_id], llm=False)
        attempt = _attempt(spans, tool_id)
        tools = [s for s in spans if s.trace_id == attempt.trace_id and s.name == "execute_tool get_weather"]
        assert len(tools) == 1 and tools[0].parent_id == attempt.span_id
        assert tools[0].attributes["gen_ai.tool.name"] == "get_weather"

        # A takeover: the run's first worker dies; a spare takes the same job over after the ack
        # wait, and its attempt joins the run's trace, under the same StartRun.
        stack.add_worker("spare", wait=True)

        async def takeover_run() -> str:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                params = {"ledger": str(tmp_path / "ledger"), "marker": str(tmp_path / "crashed")}
                run_id = await api.start("async_side_effect", **params)
                events, _ = await api.stream(run_id, timeout_s=90)
                assert events[-1]["status"] == "completed", events[-1]
                assert any(e["type"] == "run_retried" for e in events)
                return run_id

        takeover_id = asyncio.run(takeover_run())
        deadline = time.monotonic() + 30
        while True:
            spans = collected.snapshot()
            retried = [
                s
                for s in spans
                if s.name == "run attempt"
                and s.attributes.get("flotilla.run_id") == takeover_id
                and s.attributes["flotilla.delivery"] >= 2
            ]
            if retried or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(retried) == 1, [s for s in spans if s.attributes.get("flotilla.run_id") == takeover_id]
        time.sleep(1.5)
        spans = collected.snapshot()
        assert _start_chain(spans, retried[0])[2].parent_id == ""


def _ui_action(spans: list[Span], request: Span, action: str) -> Span:
    """The gateway's span of a UI call ← the UI's client span of it ← the person's action, the
    trace's root: checked, and the action returned."""
    by_id = {s.span_id: s for s in spans}
    call = by_id[request.parent_id]
    assert (call.service, call.name, call.kind) == ("ui", request.name, SpanProto.SPAN_KIND_CLIENT)
    root = by_id[call.parent_id]
    assert (root.service, root.name, root.kind, root.parent_id) == ("ui", action, SpanProto.SPAN_KIND_INTERNAL, "")
    assert root.trace_id == call.trace_id == request.trace_id
    return root


def test_a_start_from_the_ui_is_one_trace_from_the_persons_action_to_the_worker(
    receiver: tuple[Receiver, int],
) -> None:
    """The UI's gateway client (flotilla.ui.gateway, its gRPC channel from flotilla.rpc), in this
    process with tracing set up as the UI's gunicorn worker does: the start is a span of the UI's,
    the parent (through its gRPC client span) of the gateway's request span, and the worker's
    attempt is in the same trace; the answer is a trace of its own from the UI's action; reads
    and polls outside an action make no span."""
    collected, port = receiver
    settings = TracingSettings(otlp_endpoint=f"http://127.0.0.1:{port}")
    with local_stack(workers=1, tracing=settings) as stack:
        assert tracing.setup_tracing(settings, "ui")
        client = GatewayClient(stack.gateway_grpc_address, ca_file=stack.ca_file)
        try:
            credentials = Credentials(token=stack.dev_api_key)
            run = client.start_run(credentials, "load", {"n": 1, "size": 10, "asks": 1}, idempotency_key="")
            question = ""
            deadline = time.monotonic() + 30
            while not question:
                assert time.monotonic() < deadline, "the run asked nothing"
                events = client.next_events(credentials, run.run_id, after_seq=0, wait_s=1)
                question = next((e.text_input.request_id for e in events if e.HasField("text_input")), "")
            client.submit_input(credentials, run.run_id, question, "yes")
            while client.get_run(credentials, run.run_id).status != RunStatus.RUN_STATUS_COMPLETED:
                assert time.monotonic() < deadline, "the run did not complete"
                time.sleep(0.1)
        finally:
            client.close()
            tracing.shutdown_tracing()  # exports what the UI's side has left
        spans = _wait_for(collected, [run.run_id], llm=False)

    attempt = _attempt(spans, run.run_id)
    _, _, request = _start_chain(spans, attempt, "flotilla.v1.Gateway/StartRun")
    start = _ui_action(spans, request, "start run")
    assert start.attributes == {"flotilla.workflow": "load", "flotilla.run_id": run.run_id}
    trace = [s for s in spans if s.trace_id == start.trace_id]
    assert [s.span_id for s in trace if not s.parent_id] == [start.span_id]
    assert {s.service for s in trace} == {"ui", "gateway", "dispatcher", "worker"}

    answered = [s for s in spans if s.service == "gateway" and s.name == "flotilla.v1.Gateway/SubmitInput"]
    assert len(answered) == 1
    answer = _ui_action(spans, answered[0], "answer")
    assert answer.attributes == {"flotilla.run_id": run.run_id, "flotilla.request_id": question}
    assert answer.trace_id != start.trace_id
    # Only the two actions and their calls: the watches and reads made no span.
    ui_spans = sorted((s.name, s.kind) for s in spans if s.service == "ui")
    assert ui_spans == sorted(
        [
            ("start run", SpanProto.SPAN_KIND_INTERNAL),
            ("flotilla.v1.Gateway/StartRun", SpanProto.SPAN_KIND_CLIENT),
            ("answer", SpanProto.SPAN_KIND_INTERNAL),
            ("flotilla.v1.Gateway/SubmitInput", SpanProto.SPAN_KIND_CLIENT),
        ]
    )


def test_a_job_the_upkeep_queues_again_joins_its_runs_trace(receiver: tuple[Receiver, int]) -> None:
    """The run's job is lost after its start (deleted from the queue while no worker pulls): the
    dispatcher's upkeep queues it again, outside any request, and the attempt that job starts is
    in the start's trace, a child of the dispatcher's StartRun, as a first job's would be."""
    collected, port = receiver
    with local_stack(workers=1, tracing=TracingSettings(otlp_endpoint=f"http://127.0.0.1:{port}")) as stack:

        async def scenario() -> str:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                stack.workers[0].stop()  # nobody pulls: the job stays where we can lose it
                run_id = await api.start("load", n=1)
                nc = await admin(stack)
                try:
                    js = nc.jetstream()
                    job = await js.get_last_msg(JOBS_STREAM, job_subject(run_id), direct=True)
                    assert job.seq is not None
                    await js.delete_msg(JOBS_STREAM, job.seq)
                    assert not await has_job(js, run_id)
                finally:
                    await nc.close()
                stack.add_worker("worker-2")
                events, _ = await api.stream(run_id, timeout_s=60)
                assert events[-1]["status"] == "completed"
                return run_id

        run_id = asyncio.run(scenario())
        spans = _wait_for(collected, [run_id], llm=False)
        requeued = [
            line
            for line in _log_lines(stack, "dispatcher")
            if line.get("run_id") == run_id and line["event"] == "queued run had no job; queued it again"
        ]
        assert len(requeued) == 1, "the upkeep did not queue the run again"

    attempt = _attempt(spans, run_id)
    assert attempt.instance == "worker-2" and attempt.attributes["flotilla.delivery"] == 1
    _, _, request = _start_chain(spans, attempt)
    assert request.parent_id == ""
    assert [s.span_id for s in spans if s.trace_id == attempt.trace_id and not s.parent_id] == [request.span_id]


def test_with_tracing_off_nothing_is_exported_and_runs_work(receiver: tuple[Receiver, int]) -> None:
    collected, port = receiver
    # The receiver listens, but no service is told of it: tracing is off by default.
    with local_stack(workers=1, tracing=TracingSettings()) as stack:
        load_id, chat_id = asyncio.run(_run_both(stack))
        time.sleep(2.5)  # longer than an export interval, were anything batching spans
        assert collected.requests == 0 and collected.snapshot() == []
        for name in ("dispatcher", "worker-1", "gateway"):
            assert not [line for line in _log_lines(stack, name) if "trace_id" in line], name
        assert any(line.get("run_id") == chat_id for line in _log_lines(stack, "worker-1"))
