"""A reply's run and its thread, on the worker: wait for the run it follows, then read the
conversation of the thread's earlier runs from their logs (see flotilla.workflows.Thread)."""

from __future__ import annotations

import asyncio

from flotilla.errors import RunNotFound
from flotilla.events import TERMINAL_STATUSES
from flotilla.jetstream import EventLog, RunStore
from flotilla.protocol import Run, RunEvent
from flotilla.workflows import PERSON, Thread, ThreadMessage

MAX_THREAD_RUNS = 100
"""Earlier runs whose conversation a reply's run receives (the latest ones)."""
MAX_HISTORY_MESSAGES = 1000
"""Messages of the history at most (the latest ones)."""
WAIT_POLL_S = 0.2


def thread_of(record: Run) -> Thread:
    """The thread as the record names it, without history (a first run's, or before reading)."""
    return Thread(thread_id=record.thread_id or record.run_id, message=record.reply_message, reply_to=record.reply_to)


async def wait_for_predecessor(runs: RunStore, record: Run, cancelled: asyncio.Event) -> None:
    """Until the run this reply follows has ended (queue and interrupt: the reply's job may be
    pulled while it still works), or this run is cancelled. A predecessor gone from the store
    (retention) counts as ended."""
    while record.reply_to and not cancelled.is_set():
        try:
            previous, _ = await runs.get(record.reply_to)
        except RunNotFound:
            return
        if previous.status in TERMINAL_STATUSES:
            return
        record, _ = await runs.get(record.run_id)
        if record.cancel_requested or record.status in TERMINAL_STATUSES:
            return  # cancelled while it waited (the dispatcher ended it: no worker held it)
        try:
            async with asyncio.timeout(WAIT_POLL_S):
                await cancelled.wait()
        except TimeoutError:
            pass


async def read_thread(runs: RunStore, events: EventLog, record: Run) -> Thread:
    """`record`'s thread with the conversation of the runs before it, oldest first."""
    thread = thread_of(record)
    chain: list[Run] = []
    previous_id = record.reply_to
    while previous_id and len(chain) < MAX_THREAD_RUNS:
        try:
            previous, _ = await runs.get(previous_id)
        except RunNotFound:
            break  # expired: the history starts after it
        chain.append(previous)
        previous_id = previous.reply_to
    history: list[ThreadMessage] = []
    for run in reversed(chain):
        if run.reply_message:
            history.append(ThreadMessage(run.run_id, PERSON, "", run.reply_message))
        history.extend(messages_of(run.run_id, await events.read(run.run_id, from_stream_seq=run.log_from or 1)))
    return Thread(
        thread_id=thread.thread_id,
        history=tuple(history[-MAX_HISTORY_MESSAGES:]),
        message=thread.message,
        reply_to=thread.reply_to,
    )


def messages_of(run_id: str, log: list[RunEvent]) -> list[ThreadMessage]:
    """The finished messages of one run's log: text messages, questions and their answers."""
    out: list[ThreadMessage] = []
    for event in log:
        kind = event.WhichOneof("kind")
        if kind == "text_message":
            out.append(ThreadMessage(run_id, event.sender, event.recipient, event.text_message.body))
        elif kind == "text_input":
            out.append(ThreadMessage(run_id, event.sender, event.recipient, event.text_input.prompt))
        elif kind == "multiple_choice":
            out.append(ThreadMessage(run_id, event.sender, event.recipient, event.multiple_choice.prompt))
        elif kind == "input_answered":
            # Sent by the person (the session's recipient of the question); passwords are masked.
            out.append(ThreadMessage(run_id, event.sender or PERSON, event.recipient, event.input_answered.value))
    return out
