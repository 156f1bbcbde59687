"""FastAgency's client side of bench/bench_fastagency.py, with FastAgency 0.10.2's own NatsProvider
(the provider its FastAPIAdapter puts in front of a NatsAdapter). Runs in the isolated venv.

    python client.py NATS_URL OUT_JSON WORKLOADS_JSON RUNS

WORKLOADS_JSON: {"label": {"n": 10, "asks": 0}, ...}. Each workload runs RUNS times, one run at a
time: time from publishing the initiate message to the UI seeing `workflow_completed`; questions
are answered at once ("ok"). NatsProvider.run() is what a FastAgency front end calls per run, but
it never returns (it sleeps in a loop after the run) and, from a second thread, drives a broker
bound to the first thread's event loop; so this does each run's steps of run() itself, with the
provider's own code: one started broker, publish InitiateWorkflowModel to the initiate subject,
then `_setup_subscriber` (FastAgency's consumer: parses each message into an IOMessage, hands it
to the UI, publishes the answer to a question), and closes that subscriber after the run.
Writes {"label": {"latencies_s": [...], "transcripts": [[type, ...], ...]}}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from fastagency.adapters.nats import NatsAdapter
from fastagency.base import CreateWorkflowUIMixin
from fastagency.messages import IOMessage, InitiateWorkflowModel, MessageProcessorMixin, TextInput, WorkflowCompleted


class Recorder(MessageProcessorMixin, CreateWorkflowUIMixin):
    """A UI that records each message's type, answers questions at once, and notes the end."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.done: asyncio.Future[float] | None = None

    def process_message(self, message: IOMessage) -> Optional[str]:
        return self.visit(message)

    def visit_default(self, message: IOMessage) -> Optional[str]:
        self.types.append(message.type)
        return None

    def visit_text_input(self, message: TextInput) -> Optional[str]:
        self.types.append(message.type)
        return "ok"

    def visit_workflow_completed(self, message: WorkflowCompleted) -> Optional[str]:
        self.types.append(message.type)
        assert self.done is not None
        self.done.set_result(time.perf_counter())
        return None


async def one_run(provider: Any, params: dict[str, Any]) -> tuple[float, list[str]]:
    recorder = Recorder()
    recorder.done = asyncio.get_running_loop().create_future()
    workflow_uuid = uuid.uuid4().hex
    ui = recorder.create_workflow_ui(workflow_uuid)
    from_server, to_server = f"chat.client.messages.None.{workflow_uuid}", f"chat.server.messages.None.{workflow_uuid}"
    init = InitiateWorkflowModel(user_id=None, workflow_uuid=workflow_uuid, params=params, name="load")
    started = time.perf_counter()
    await provider.broker.publish(init, provider._initiate_chat_subject)
    await provider._setup_subscriber(ui, from_server, to_server)
    ended = await asyncio.wait_for(recorder.done, timeout=60)
    for key, subscriber in list(provider.broker._subscribers.items()):
        if getattr(subscriber, "subject", None) == from_server:
            await subscriber.stop()
            del provider.broker._subscribers[key]
    return ended - started, recorder.types


async def main(nats_url: str, out: Path, workloads: dict[str, dict[str, Any]], runs: int) -> None:
    provider = NatsAdapter.create_provider(nats_url=nats_url)
    results: dict[str, dict[str, list[Any]]] = {}
    async with provider.broker:
        await provider.broker.start()
        for label, params in workloads.items():
            latencies, transcripts = [], []
            for _ in range(runs):
                elapsed, types = await one_run(provider, params)
                latencies.append(elapsed)
                transcripts.append(types)
            results[label] = {"latencies_s": latencies, "transcripts": transcripts}
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    logging.disable(logging.INFO)
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])))
