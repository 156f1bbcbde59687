"""How long the page takes to show an event after the worker emits it: each event's timestamp
(set by the worker as it emits) against the moment its text appears in the DOM (a
MutationObserver in the page; browser and worker share this machine's clock). Printed and saved
as latency.json beside the screenshots; never asserted (the machine is shared)."""

from __future__ import annotations

import asyncio
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from playwright.sync_api import Page

from flotilla.devstack import LocalStack
from support import Api
from ui.browsing import Shots, screenshot_dir, sign_in, start_workflow, wait_finished

N = 12
OBSERVER = """
window.__seen = {};
new MutationObserver(() => {
  const now = performance.timeOrigin + performance.now();
  for (const m of document.body.innerText.matchAll(/paced message (\\d+) of \\d+/g)) {
    if (!(m[1] in window.__seen)) window.__seen[m[1]] = now;
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def _events(stack: LocalStack, run_id: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            return await api.events(run_id)

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        return pool.submit(asyncio.run, fetch()).result()


def test_event_to_dom_latency(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    assert ui_stack.config.ui_password
    sign_in(page, ui_stack.ui_url, "developer", ui_stack.config.ui_password)
    page.evaluate(OBSERVER)  # the page is a single-page app: the observer stays for the run
    run_id = start_workflow(page, "paced_chat", params_json=json.dumps({"n": N, "delay_s": 0.5, "ask_at": -1}))
    wait_finished(page)
    seen: dict[str, float] = page.evaluate("() => window.__seen")
    emitted = {
        e["body"].split()[2]: datetime.fromisoformat(e["timestamp"]).timestamp() * 1000
        for e in _events(ui_stack, run_id)
        if e["type"] == "text_message"
    }
    latencies = sorted(seen[k] - emitted[k] for k in emitted if k in seen)
    assert len(latencies) == N, (seen, emitted)
    report = {
        "events": N,
        "p50_ms": round(statistics.median(latencies), 1),
        "max_ms": round(latencies[-1], 1),
        "min_ms": round(latencies[0], 1),
        "all_ms": [round(x, 1) for x in latencies],
        "screenshot": str(shots(page, "latency transcript")),
    }
    (screenshot_dir() / "latency.json").write_text(json.dumps(report, indent=2))
    print(f"event-to-DOM latency over {N} events: p50 {report['p50_ms']} ms, max {report['max_ms']} ms")
