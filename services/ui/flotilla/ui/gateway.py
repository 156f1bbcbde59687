"""The UI's only way to runs: a blocking client of the gateway's gRPC API (flotilla.v1.Gateway).

Every call carries the credentials of the person signed in: either their own API key (bearer) or
the UI's service key plus `flotilla-act-as: <identity>`. Errors become `GatewayError` with a
sentence a person can read; the page shows it as is.

With tracing on (flotilla.tracing), each person's action here (start, answer, cancel, reply, fork,
retry) is a span, the root of a trace, and its call carries `traceparent` (the channel's
interceptor), so the gateway's span of the call is its child: a start is one trace from the click
to the worker. Reads and the page's polling make no spans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from flotilla import tracing
from flotilla.rpc import sync_channel
from flotilla.protocol import (
    CancelRunRequest,
    CancelRunResponse,
    GatewayStub,
    GetRunRequest,
    ListEventsRequest,
    ListRunsRequest,
    DeadLetter,
    ForkRunRequest,
    ListDeadLettersRequest,
    ListWorkflowsRequest,
    ReplyDelta,
    ReplyRunRequest,
    RetryRunRequest,
    Run,
    RunEvent,
    StartRunRequest,
    StartRunResponse,
    SubmitInputRequest,
    WatchRunRequest,
    WhoAmIRequest,
    WorkflowInfo,
)

ACT_AS_METADATA = "flotilla-act-as"
T = TypeVar("T")
_RUN_ID = "flotilla.run_id"


def _action(name: str, **attributes: str) -> AbstractContextManager[tracing.Span | None]:
    """A person's action: a span (None when tracing is off) its gateway calls are children of."""
    return tracing.span(name, attributes=attributes)


def _made(action: tracing.Span | None, run: Run, attribute: str = "flotilla.new_run_id") -> Run:
    """The run an action made, named on its span."""
    if action is not None:
        action.set_attribute(attribute, run.run_id)
    return run


@dataclass(frozen=True)
class Credentials:
    """How one person's calls authenticate: a bearer token, optionally acting for an identity."""

    token: str
    act_as: str | None = None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pairs = [("authorization", f"Bearer {self.token}")]
        if self.act_as:
            pairs.append((ACT_AS_METADATA, self.act_as))
        return tuple(pairs)


@dataclass(frozen=True)
class Who:
    identity: str
    admin: bool
    via: str


class GatewayError(Exception):
    """A call failed; `str()` is a message for the person, `code` the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "The gateway cannot be reached right now; try again in a moment.",
    grpc.StatusCode.UNAUTHENTICATED: "The gateway did not accept these credentials.",
    grpc.StatusCode.PERMISSION_DENIED: "You are not allowed to do that.",
    grpc.StatusCode.NOT_FOUND: "Not found (or not yours).",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "Too many requests; slow down a little.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "The gateway took too long to answer.",
}


def _translate(error: grpc.RpcError) -> GatewayError:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    detail = error.details() if isinstance(error, grpc.Call) else str(error)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION) and detail:
        return GatewayError(code, detail[:1].upper() + detail[1:])
    return GatewayError(code, _MESSAGES.get(code, f"The gateway answered {code.name}: {detail}"))


class GatewayClient:
    """One channel per process (it is thread-safe); `timeout_s` bounds every unary call."""

    def __init__(
        self, address: str, *, ca_file: str | None = None, server_name: str | None = None, timeout_s: float = 10.0
    ) -> None:
        """TLS when `ca_file` is given (verifying the gateway's certificate with it)."""
        self._channel = sync_channel(address, ca_file=ca_file, server_name=server_name)
        self._stub = GatewayStub(self._channel)
        self._timeout_s = timeout_s

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: Any, credentials: Credentials) -> T:
        try:
            return method(request, metadata=credentials.metadata(), timeout=self._timeout_s)
        except grpc.RpcError as error:
            raise _translate(error) from None

    def who_am_i(self, credentials: Credentials) -> Who:
        reply = self._call(self._stub.WhoAmI, WhoAmIRequest(), credentials)
        return Who(identity=reply.identity, admin=reply.admin, via=reply.via)

    def list_workflows(self, credentials: Credentials) -> list[WorkflowInfo]:
        reply = self._call(self._stub.ListWorkflows, ListWorkflowsRequest(), credentials)
        return sorted(reply.workflows, key=lambda w: w.name)

    def start_run(
        self, credentials: Credentials, workflow: str, params: dict[str, Any], *, idempotency_key: str
    ) -> Run:
        request = StartRunRequest(workflow=workflow, params_json=json.dumps(params), idempotency_key=idempotency_key)
        with _action("start run", **{"flotilla.workflow": workflow}) as action:
            reply: StartRunResponse = self._call(self._stub.StartRun, request, credentials)
            return _made(action, reply.run, _RUN_ID)

    def get_run(self, credentials: Credentials, run_id: str) -> Run:
        run: Run = self._call(self._stub.GetRun, GetRunRequest(run_id=run_id), credentials)
        return run

    def list_runs(self, credentials: Credentials, *, limit: int = 50) -> list[Run]:
        """The person's runs, newest first."""
        reply = self._call(self._stub.ListRuns, ListRunsRequest(limit=limit), credentials)
        return sorted(reply.runs, key=lambda r: (r.created_at.seconds, r.created_at.nanos), reverse=True)

    def list_events(self, credentials: Credentials, run_id: str, *, after_seq: int = 0) -> Sequence[RunEvent]:
        """Every stored event after `after_seq` the page shows (hidden ones are not sent), page by page."""
        events: list[RunEvent] = []
        while True:
            reply = self._call(
                self._stub.ListEvents, ListEventsRequest(run_id=run_id, after_seq=after_seq), credentials
            )
            events.extend(reply.events)
            if not reply.more:
                return events
            after_seq = reply.next_after_seq

    def next_events(self, credentials: Credentials, run_id: str, *, after_seq: int, wait_s: float) -> list[RunEvent]:
        """The first batch of events after `after_seq`, waiting at most `wait_s` for one ([] if none came).

        A short watch instead of an endless one: the page handles one event at a time, so a
        person's click must not wait behind a stream that never ends."""
        events, _ = self._next(credentials, run_id, after_seq=after_seq, wait_s=wait_s, reply=None)
        return events

    def next_update(
        self, credentials: Credentials, run_id: str, *, after_seq: int, wait_s: float, reply: tuple[str, int] = ("", -1)
    ) -> tuple[list[RunEvent], list[ReplyDelta]]:
        """`next_events`, or what is new of the reply being written (`reply`: the reply id and the
        index of its last piece the page has), whichever comes first (([], []) if none came)."""
        return self._next(credentials, run_id, after_seq=after_seq, wait_s=wait_s, reply=reply)

    def _next(
        self, credentials: Credentials, run_id: str, *, after_seq: int, wait_s: float, reply: tuple[str, int] | None
    ) -> tuple[list[RunEvent], list[ReplyDelta]]:
        call = self._stub.WatchRun(
            WatchRunRequest(run_id=run_id, after_seq=after_seq, include_deltas=reply is not None),
            metadata=credentials.metadata(),
            timeout=wait_s,
        )
        try:
            for response in call:
                # A new watch first sends the reply's text so far: what the page has is skipped.
                deltas = [d for d in response.deltas if reply is None or d.reply_id != reply[0] or d.index > reply[1]]
                if response.events or deltas:
                    return list(response.events), deltas
            return [], []
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return [], []
            raise _translate(error) from None
        finally:
            call.cancel()

    def submit_input(self, credentials: Credentials, run_id: str, request_id: str, value: str) -> None:
        request = SubmitInputRequest(run_id=run_id, request_id=request_id, value=value)
        with _action("answer", **{_RUN_ID: run_id, "flotilla.request_id": request_id}):
            self._call(self._stub.SubmitInput, request, credentials)

    def cancel_run(self, credentials: Credentials, run_id: str) -> Run:
        with _action("cancel run", **{_RUN_ID: run_id}):
            reply: CancelRunResponse = self._call(self._stub.CancelRun, CancelRunRequest(run_id=run_id), credentials)
            return reply.run

    def reply_run(self, credentials: Credentials, run_id: str, message: str, *, idempotency_key: str) -> Run:
        """The next run of `run_id`'s thread, started with `message`."""
        request = ReplyRunRequest(run_id=run_id, message=message, idempotency_key=idempotency_key)
        with _action("reply", **{_RUN_ID: run_id}) as action:
            reply: StartRunResponse = self._call(self._stub.ReplyRun, request, credentials)
            return _made(action, reply.run)

    def fork_run(self, credentials: Credentials, run_id: str, at_seq: int, *, idempotency_key: str) -> Run:
        """A new run from `run_id`'s log up to `at_seq`, live from there."""
        request = ForkRunRequest(run_id=run_id, at_seq=at_seq, idempotency_key=idempotency_key)
        with _action("fork run", **{_RUN_ID: run_id}) as action:
            reply: StartRunResponse = self._call(self._stub.ForkRun, request, credentials)
            return _made(action, reply.run)

    def list_dead_letters(self, credentials: Credentials, *, limit: int = 100) -> list[DeadLetter]:
        """Admins: jobs no worker could run, newest first."""
        reply = self._call(self._stub.ListDeadLetters, ListDeadLettersRequest(limit=limit), credentials)
        return list(reply.dead_letters)

    def retry_run(self, credentials: Credentials, run_id: str, *, idempotency_key: str) -> Run:
        """Admins: a failed run again (a new run of its owner's, forked from its whole log)."""
        request = RetryRunRequest(run_id=run_id, idempotency_key=idempotency_key)
        with _action("retry run", **{_RUN_ID: run_id}) as action:
            reply: StartRunResponse = self._call(self._stub.RetryRun, request, credentials)
            return _made(action, reply.run)
