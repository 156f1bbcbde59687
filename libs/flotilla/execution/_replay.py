"""Resuming a run from its event log: what earlier attempts already did, handed to the new one.

A worker that takes a run over executes the workflow again from the top, but with everything
nondeterministic taken from the log: each LLM completion (`llm_completion` events, handed out by
`flotilla.llm.Replay`, each checked against the digest of the request it answered), each answer
(by request id), each timed-out question, each tool result (`function_call_execution` with a
`step`: the tool does not run again). While the workflow retraces its steps, every event it
emits is compared with the next one in the log and dropped (the log holds it already), so a
person sees one unbroken conversation and is never asked the same question twice. Once the log
runs out the run continues live.

If the workflow emits something else than the log holds at that point (its code changed, or it
took another path: a clock, randomness, an outside call not made through the session), the run
has diverged from its history. The policy decides: `fail` (the default) ends the run with a
`Nondeterminism` error naming the step where the paths part; `continue` records a visible error
at that point and goes on live, so the log shows where the histories meet.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf.message import Message

from flotilla.execution._usage import UsageTally
from flotilla.errors import Nondeterminism
from flotilla.protocol import FunctionCallExecution, RunEvent

ATTEMPT_KINDS = frozenset({"workflow_started", "run_retried", "workflow_completed"})
"""Written by the worker around each attempt, not by the workflow: never replayed."""
RECORDED_KINDS = frozenset({"llm_completion"})
"""Replayed as inputs (LLM completions), so a retraced workflow does not emit them again."""

DivergencePolicy = Literal["fail", "continue"]


def _describe(kind: str, body: Message, sender: str, recipient: str) -> str:
    fields = {f.name: v for f, v in body.ListFields()}
    text = json.dumps(fields, default=str, sort_keys=True)
    return f"{kind} {sender or '-'} -> {recipient or '-'} {text[:160]}"


@dataclass
class PriorAttempts:
    """The workflow's own events from earlier attempts of a run, in order, and its inputs."""

    events: deque[RunEvent] = field(default_factory=deque)
    """The events the workflow emitted; the new attempt must emit the same ones, in order."""
    completions: list[dict[str, Any]] = field(default_factory=list)
    """LLM completions the run used, in order (`Completion.to_dict()` form)."""
    digests: list[str] = field(default_factory=list)
    """SHA-256 of the request each completion answered ("" when not recorded)."""
    asked_at: dict[str, float] = field(default_factory=dict)
    """When each question was first asked (its timeout runs from then, not from the replay)."""
    tools: dict[int, FunctionCallExecution] = field(default_factory=dict)
    """Recorded tool results by step."""
    policy: DivergencePolicy = "fail"
    replayed: int = 0
    """How many of `events` the new attempt has matched so far."""
    diverged: Nondeterminism | None = None
    """Where the workflow left its log, once it did."""
    usage: UsageTally = field(default_factory=UsageTally)
    """What earlier attempts' LLM calls used."""
    fork_source: str = ""
    """A fork's source run: the answers in `forked_answers` are that run's (its questions, stored)."""
    forked_answers: frozenset[str] = frozenset()
    """Request ids a fork's copied log shows answered: their answers come from `fork_source`."""

    @classmethod
    def from_log(cls, events: Iterable[RunEvent], *, policy: DivergencePolicy = "fail") -> PriorAttempts:
        prior = cls(policy=policy)
        for event in events:
            kind = event.WhichOneof("kind") or ""
            if kind in ATTEMPT_KINDS:
                continue
            if kind in RECORDED_KINDS:
                prior.usage.add(event.llm_completion)
                prior.completions.append(json.loads(event.llm_completion.completion_json))
                prior.digests.append(event.llm_completion.request_sha256)
                continue
            if kind in ("text_input", "multiple_choice"):
                request_id = getattr(event, kind).request_id
                prior.asked_at.setdefault(request_id, event.timestamp.seconds + event.timestamp.nanos / 1e9)
            if kind == "function_call_execution" and event.function_call_execution.step:
                prior.tools[event.function_call_execution.step] = event.function_call_execution
            prior.events.append(event)
        return prior

    def forked(self, source: str, at_seq: int, events: Iterable[RunEvent]) -> PriorAttempts:
        """This prior as a fork's: the questions answered in the log up to `at_seq` take their
        answers from `source` (the fork's own questions are opened only past that point)."""
        events = list(events)
        self.fork_source = source
        self.forked_answers = frozenset(
            event.input_answered.request_id
            for event in events
            if event.seq <= at_seq and event.WhichOneof("kind") == "input_answered"
        )
        for event in events:  # a question the fork asks anew waits its whole timeout again
            kind = event.WhichOneof("kind") or ""
            if event.seq <= at_seq and kind in ("text_input", "multiple_choice"):
                self.asked_at.pop(getattr(event, kind).request_id, None)
        return self

    @property
    def live(self) -> bool:
        """The log has run out: what the workflow emits now is new."""
        return not self.events

    def already_emitted(self, kind: str, body: Message, *, sender: str, recipient: str) -> bool:
        """True when the next logged event is this one (it is consumed: do not emit it again);
        False once the log ran out. If the workflow emits something else than the log holds,
        raise Nondeterminism (`fail`), or drop the rest of the log and return False (`continue`;
        check `diverged`)."""
        if not self.events:
            return False
        logged = self.events[0]
        same = (
            logged.WhichOneof("kind") == kind
            and logged.sender == sender
            and logged.recipient == recipient
            and getattr(logged, kind).SerializeToString(deterministic=True)
            == body.SerializeToString(deterministic=True)
        )
        if same:
            self.events.popleft()
            self.replayed += 1
            return True
        self.diverged = self._divergence(logged, kind, body, sender, recipient)
        if self.policy == "fail":
            raise self.diverged
        self.events.clear()
        self.completions.clear()
        self.tools.clear()
        return False

    def _divergence(self, logged: RunEvent, kind: str, body: Message, sender: str, recipient: str) -> Nondeterminism:
        step = self.replayed + 1
        logged_kind = logged.WhichOneof("kind") or "unknown"
        was = _describe(logged_kind, getattr(logged, logged_kind), logged.sender, logged.recipient)
        now = _describe(kind, body, sender, recipient)
        return Nondeterminism(
            f"the workflow took another path than its log at step {step} (seq {logged.seq}): "
            f"the log has [{was}], the workflow now emits [{now}]"
        )

    def tool_result(self, step: int) -> FunctionCallExecution | None:
        """The recorded result of the tool call at `step`, if an earlier attempt finished it;
        the events that call emitted (questions inside the tool, its result) are consumed."""
        recorded = self.tools.pop(step, None)
        if recorded is None:
            return None
        while self.events:
            event = self.events.popleft()
            self.replayed += 1
            if event.WhichOneof("kind") == "function_call_execution" and event.function_call_execution.step == step:
                break
        return recorded
