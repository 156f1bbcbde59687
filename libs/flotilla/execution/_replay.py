"""Resuming a run from its event log: what earlier attempts already did, handed to the new one.

A worker that takes a run over executes the workflow again from the top, but with everything
nondeterministic taken from the log: each LLM completion (`llm_completion` events, handed out by
`flotilla.llm.Replay`), each answer (stored by request id), each timed-out question. While the
workflow retraces its steps, the session drops the events it emits that the log already holds,
so a person sees one unbroken conversation and is never asked the same question twice. Once the
log runs out the run continues live.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flotilla.protocol import RunEvent

ATTEMPT_KINDS = frozenset({"workflow_started", "run_retried", "workflow_completed"})
"""Written by the worker around each attempt, not by the workflow: never replayed."""
RECORDED_KINDS = frozenset({"llm_completion"})
"""Replayed as inputs (LLM completions), so a retraced workflow does not emit them again."""


@dataclass
class PriorAttempts:
    """The workflow's own events from earlier attempts of a run, in order."""

    emitted: deque[str] = field(default_factory=deque)
    """Kinds of the events the workflow emitted; the new attempt skips the same ones in order."""
    completions: list[dict[str, Any]] = field(default_factory=list)
    """LLM completions the run used, in order (`Completion.to_dict()` form)."""
    timed_out: set[str] = field(default_factory=set)
    """Request ids whose question timed out and got its default."""

    @classmethod
    def from_log(cls, events: Iterable[RunEvent]) -> PriorAttempts:
        prior = cls()
        for event in events:
            kind = event.WhichOneof("kind") or ""
            if kind in ATTEMPT_KINDS:
                continue
            if kind in RECORDED_KINDS:
                prior.completions.append(json.loads(event.llm_completion.completion_json))
                continue
            if kind == "input_answered" and event.input_answered.timed_out:
                prior.timed_out.add(event.input_answered.request_id)
            prior.emitted.append(kind)
        return prior

    def already_emitted(self, kind: str) -> bool | None:
        """Whether the next event of this kind is already in the log (then skip it): True, and
        it is consumed; False once the log ran out; None when the workflow took another path
        than before (it emitted something else): the rest of the log is dropped and the run
        goes live."""
        if not self.emitted:
            return False
        if self.emitted[0] == kind:
            self.emitted.popleft()
            return True
        self.emitted.clear()
        return None
