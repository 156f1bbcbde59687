"""Benchmark: a chat's log grows linearly with its length (issue 11, hole 10).

    ./pants run bench:loggrowth -- [--turns 10,20,30,40,50]

Runs learning chats (a student and a teacher agent, AG2, on the scripted model) of each length
on a local stack, then prints per chat: the stored log's bytes (what JetStream holds for the run),
the bytes a client's stream carries (JSON over the WebSocket, hidden events left out), and bytes
per turn. Each `llm_completion` stores the completion and a digest of the request, not the
conversation so far, so bytes per turn stay flat as chats get longer (they grew with the square
of the length when every completion carried its whole request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import httpx
import websockets

from measure import bench_config
from flotilla.devstack import LocalStack
from flotilla.jetstream import EVENTS_STREAM, EventLog, events_subject

TEST_WORKFLOWS = "testing_workflows:registry"
SCRIPTED = ["Could you explain that more simply?", "Start with one small example, then generalise."]


async def stored_bytes(stack: LocalStack, run_id: str) -> tuple[int, int]:
    """(bytes, messages) JetStream stores for the run's log."""
    nc = await stack.nats_connect("operator")
    try:
        js = nc.jetstream()
        info = await js.stream_info(EVENTS_STREAM, subjects_filter=events_subject(run_id))
        messages = sum((info.state.subjects or {}).values())
        sub = await js.subscribe(events_subject(run_id), stream=EVENTS_STREAM, ordered_consumer=True)
        size = 0
        for _ in range(messages):
            msg = await sub.next_msg(timeout=10)
            size += len(msg.data) + sum(len(k) + len(v) for k, v in (msg.headers or {}).items())
        await sub.unsubscribe()
        return size, messages
    finally:
        await nc.close()


async def chat(stack: LocalStack, turns: int) -> tuple[str, int, int]:
    """Run one chat to its end over the WebSocket; (run_id, events, client bytes)."""
    headers = {"Authorization": f"Bearer {stack.dev_api_key}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=60) as http:
        response = await http.post("/v1/runs", json={"workflow": "long_chat", "params": {"turns": turns}})
        response.raise_for_status()
        run_id = response.json()["run_id"]
    ws_url = stack.gateway_url.replace("http://", "ws://")
    events, client_bytes = 0, 0
    async with websockets.connect(f"{ws_url}/v1/runs/{run_id}/stream", additional_headers=headers, max_size=None) as ws:
        async for frame in ws:
            client_bytes += len(frame)
            event = json.loads(frame)
            events += 1
            if event["type"] == "text_input":
                await ws.send(json.dumps({"type": "input", "request_id": event["request_id"], "value": "Physics"}))
            if event["type"] == "workflow_completed":
                assert event["status"] == "completed", event
    return run_id, events, client_bytes


async def bench(stack: LocalStack, lengths: list[int]) -> None:
    print(
        f"{'turns':>5} {'events':>7} {'log bytes':>10} {'msgs':>5} {'bytes/turn':>10} {'client bytes':>12} {'client/turn':>11}"
    )
    previous: tuple[int, int] | None = None
    for turns in lengths:
        run_id, _, client = await chat(stack, turns)
        size, messages = await stored_bytes(stack, run_id)
        nc = await stack.nats_connect("operator")
        try:
            stored = len(await EventLog(nc).read(run_id))
        finally:
            await nc.close()
        step = ""
        if previous is not None:
            step = f"   +{(size - previous[1]) / (turns - previous[0]):.0f} B/turn since {previous[0]}"
        print(
            f"{turns:>5} {stored:>7} {size:>10} {messages:>5} {size / turns:>10.0f} {client:>12} {client / turns:>11.0f}{step}"
        )
        previous = (turns, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", default="10,20,30,40,50", help="chat lengths, comma-separated")
    args = parser.parse_args()
    lengths = [int(t) for t in args.turns.split(",")]
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
        config = bench_config(
            Path(tmp),
            workflows=TEST_WORKFLOWS,
            FLOTILLA_LLM_BACKEND="scripted",
            FLOTILLA_LLM_SCRIPTED_REPLIES=json.dumps(SCRIPTED),
        )
        with LocalStack(config) as stack:
            asyncio.run(bench(stack, lengths))


if __name__ == "__main__":
    main()
