"""FastAgency's side of bench/bench_fastagency.py: a `load` workflow served by FastAgency 0.10.2's
NatsAdapter (direct NATS JetStream, no gateway). Runs in the isolated FastAgency venv.

    python app.py NATS_URL

`load` does what Flotilla's flotilla.examples.benchmarks `load` does: n text messages of `size`
characters, then `asks` questions through ui.text_input (each answer echoed back as a message),
then the result. The adapter is served the way FastAgency's docs serve it (its `lifespan`, here
without the FastAPI app around it, which adds nothing to a NATS-only run). INFO logging is off,
as the Flotilla stack it is compared with logs at warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from fastagency import UI
from fastagency.adapters.nats import NatsAdapter
from fastagency.runtimes.ag2 import Workflow

wf = Workflow()


@wf.register(name="load", description="Emits n messages of size bytes and asks asks questions.")
def load(ui: UI, params: dict[str, Any]) -> str:
    n, size, asks = int(params.get("n", 10)), int(params.get("size", 100)), int(params.get("asks", 0))
    body = "x" * size
    for _ in range(n):
        ui.text_message(sender="load", recipient="user", body=body)
    answers = []
    for i in range(asks):
        answer = ui.text_input(sender="load", recipient="user", prompt=f"question {i + 1} of {asks}")
        answers.append(answer)
        ui.text_message(sender="load", recipient="user", body=f"echo: {answer}")
    return json.dumps({"messages": n, "answers": answers})


async def main(nats_url: str) -> None:
    adapter = NatsAdapter(provider=wf, nats_url=nats_url)
    async with adapter.lifespan(None):
        print("fastagency app ready", flush=True)
        await asyncio.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    logging.disable(logging.INFO)
    asyncio.run(main(sys.argv[1]))
