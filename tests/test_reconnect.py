"""A client that drops its WebSocket mid-run many times and reconnects with after=<last seq>
ends with exactly the run's event log: nothing missed, nothing twice."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import websockets

from flotilla.devstack import LocalStack
from support import Api, assert_well_formed


def test_dropping_and_resuming_the_stream_many_times(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("slow_messages", n=120, delay_s=0.01)
            transcript: list[dict[str, Any]] = []
            drops = 0
            while not transcript or transcript[-1]["type"] != "workflow_completed":
                after = transcript[-1]["seq"] if transcript else 0
                url = f"{api.ws_url}/v1/runs/{run_id}/stream?after={after}&token={api.token}"
                async with websockets.connect(url) as ws:
                    for _ in range(random.randint(1, 8)):
                        try:
                            transcript.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                        except websockets.ConnectionClosedOK:
                            break
                drops += 1  # leaving the `with` drops the connection mid-run
            assert drops >= 20
            assert_well_formed(run_id, transcript)
            assert transcript == await api.events(run_id)

    asyncio.run(scenario())
