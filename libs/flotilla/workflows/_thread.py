"""What a run knows of its thread: the conversation of the runs before it and the person's reply.

A thread is a sequence of runs sharing one conversation. Its first run starts as any run does; a
reply (`POST /v1/runs/{run_id}/reply`) starts the next run of the same workflow, and that run's
session carries the thread: `session.thread.history` (the finished messages of the earlier runs,
read from their logs, oldest first) and `session.thread.message` (what the person said now). A
workflow that wants to continue the conversation reads them; one that does not simply runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

PERSON = "user"
"""The sender of what the person said (answers and replies), as the session's default recipient."""


@dataclass(frozen=True)
class ThreadMessage:
    """One finished message of an earlier run of the thread."""

    run_id: str
    sender: str
    recipient: str
    body: str


@dataclass(frozen=True)
class Thread:
    thread_id: str
    """The thread's first run (a first run's own id)."""
    history: tuple[ThreadMessage, ...] = ()
    """The conversation of the thread's earlier runs, oldest first: their text messages, the
    questions they asked and the person's answers and replies (sender `user`)."""
    message: str = ""
    """What the person said to start this run; empty on a thread's first run."""
    reply_to: str = ""
    """The run this one follows; empty on a thread's first run."""

    @property
    def is_reply(self) -> bool:
        return bool(self.reply_to)
