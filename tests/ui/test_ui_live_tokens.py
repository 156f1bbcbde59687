"""Live tokens on the page: the reply an agent's model is writing shows and grows, and the finished
message replaces it. Also measures the time to first token on the page: from the model's first
token (the worker's clock, carried in each delta as `first_token_at`) to that reply's text
appearing in the DOM (a MutationObserver in the page; browser and worker share this machine's
clock), per reply, with the scripted model and with the bundled local model. The figures are
printed and saved as live_tokens_<model>.json beside the screenshots; never asserted (the machine
is shared)."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
import websockets
from playwright.sync_api import Page, expect

from flotilla.devstack import LocalStack
from support import local_stack
from ui.browsing import WAIT_MS, Shots, screenshot_dir, sign_in, wait_finished

WORD_DELAY_S = 0.25  # ~7 s a reply: the page sees it grow even on a loaded machine
REPLIES = [
    "Gravity is the pull that every mass has on every other mass, near or far, and it is what keeps "
    "the planets moving on their paths around the Sun.",
    "Then why does the Moon not simply fall down onto the Earth if gravity pulls on it all the time?",
]
# Records each change of the reply being written: when, and its text ("" once it is gone).
OBSERVER = """
window.__writing = [];
new MutationObserver(() => {
  const now = performance.timeOrigin + performance.now();
  const block = document.querySelector('.item-writing');
  const text = block ? block.innerText : '';
  const last = window.__writing[window.__writing.length - 1];
  if (!last || last.text !== text) window.__writing.push({t: now, text: text});
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def scripted_stack() -> Iterator[LocalStack]:
    env = {
        "FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(REPLIES),
        "FLOTILLA_LLM_SCRIPTED_WORD_DELAY_S": str(WORD_DELAY_S),
    }
    with local_stack(workers=1, with_ui=True, env=env) as running:
        yield running


def _collect_deltas(stack: LocalStack, run_id: str) -> Future[list[dict[str, Any]]]:
    """Every reply delta of the run, from a v1 WebSocket in a thread of its own (Playwright's sync
    API owns this thread's event loop), until the run ends."""

    async def collect() -> list[dict[str, Any]]:
        url = stack.gateway_url.replace("http", "ws", 1) + f"/v1/runs/{run_id}/stream?deltas=true"
        headers = {"Authorization": f"Bearer {stack.dev_api_key}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            return [frame for text in [t async for t in ws] if (frame := json.loads(text))["type"] == "reply_delta"]

    pool = ThreadPoolExecutor(1)
    future = pool.submit(asyncio.run, collect())
    pool.shutdown(wait=False)
    return future


def _run_learning_chat(stack: LocalStack, page: Page, turns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Starts learning_chat from the page, answers its question there, waits for the end; returns
    the page's observations of the reply being written and the run's deltas."""
    assert stack.config.ui_password
    sign_in(page, stack.ui_url, "developer", stack.config.ui_password)
    page.evaluate(OBSERVER)  # the page is a single-page app: the observer stays for the run
    page.get_by_role("button", name="New run").click()
    page.locator(".catalogue").get_by_role("button", name=re.compile(r"^learning_chat\b")).click()
    expect(page.get_by_label("Turns")).to_have_value("3", timeout=WAIT_MS)
    page.get_by_label("Turns").fill(str(turns))
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"[?&]run="), timeout=WAIT_MS)
    match = re.search(r"[?&]run=([^&]+)", page.url)
    assert match, page.url
    run_id = match.group(1)
    deltas = _collect_deltas(stack, run_id)
    topic = page.get_by_label("What do you want to learn about?")
    expect(topic).to_be_enabled(timeout=WAIT_MS)
    topic.fill("Gravity")
    topic.press("Enter")
    wait_finished(page)
    return page.evaluate("() => window.__writing"), deltas.result(timeout=WAIT_MS / 1000)


def _first_token_to_page(observations: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per reply: the worker's first-token time, when the page first showed its text, the gap."""
    replies: dict[str, dict[str, Any]] = {}
    for delta in deltas:
        if delta["reply_id"] not in replies and delta["first_index"] == 0:
            at = datetime.fromisoformat(delta["first_token_at"]).timestamp() * 1000
            replies[delta["reply_id"]] = {"sender": delta["sender"], "first_token_ms": at, "first_text": delta["text"]}
    ordered = sorted(replies.values(), key=lambda reply: reply["first_token_ms"])
    for reply, following in zip(ordered, [*ordered[1:], None], strict=True):
        end = following["first_token_ms"] if following else float("inf")
        words = reply["first_text"].split()
        shown = [
            o["t"]
            for o in observations
            if reply["first_token_ms"] - 5 <= o["t"] < end and words and words[0] in o["text"]
        ]
        if shown:
            reply["on_page_ms"] = min(shown)
            reply["first_token_to_page_ms"] = round(reply["on_page_ms"] - reply["first_token_ms"], 1)
    return replies


def _report(model: str, replies: dict[str, dict[str, Any]], shot: str) -> dict[str, Any]:
    gaps = sorted(r["first_token_to_page_ms"] for r in replies.values() if "first_token_to_page_ms" in r)
    report = {
        "model": model,
        "replies": len(replies),
        "measured": len(gaps),
        "median_ms": round(statistics.median(gaps), 1) if gaps else None,
        "min_ms": gaps[0] if gaps else None,
        "max_ms": gaps[-1] if gaps else None,
        "all_ms": gaps,
        "screenshot": shot,
    }
    (screenshot_dir() / f"live_tokens_{model}.json").write_text(json.dumps(report, indent=2))
    print(f"first token -> page ({model}) over {len(gaps)} replies: median {report['median_ms']} ms, all {gaps}")
    return report


def test_the_reply_grows_on_the_page_then_the_message_replaces_it(
    scripted_stack: LocalStack, page: Page, shots: Shots
) -> None:
    observations, deltas = _run_learning_chat(scripted_stack, page, turns=2)
    texts = [o["text"] for o in observations]
    # The first reply (the teacher's) as the page showed it while it was written: at least three
    # ever longer texts, each continuing the last, before the block went away.
    first_reply = REPLIES[0].split()
    seen: list[str] = []
    for text in texts:
        if not text:
            if seen:
                break
            continue
        body = text.split("writing…", 1)[-1].strip()
        if body and first_reply[0] in body:
            seen.append(body)
    for shorter, longer in zip(seen, seen[1:], strict=False):
        assert longer.startswith(shorter) and len(longer) > len(shorter), (shorter, longer)
    partial = [text for text in seen if text != REPLIES[0]]
    assert len(partial) >= 3 and all(REPLIES[0].startswith(text) for text in partial), texts
    assert texts[-1] == ""  # gone once the finished messages came
    expect(page.locator(".item-writing")).to_have_count(0)
    expect(page.get_by_text(REPLIES[0]).first).to_be_visible()  # the finished messages
    expect(page.get_by_text(REPLIES[1]).first).to_be_visible()
    assert len({d["reply_id"] for d in deltas}) == 3
    report = _report("scripted", _first_token_to_page(observations, deltas), str(shots(page, "finished")))
    assert report["measured"] == 3, report


def test_time_to_first_token_on_the_page_with_the_bundled_model(page: Page, shots: Shots) -> None:
    with local_stack(workers=1, with_ui=True, env={"FLOTILLA_LLM_BACKEND": "local"}) as stack:
        observations, deltas = _run_learning_chat(stack, page, turns=3)
        replies = _first_token_to_page(observations, deltas)
        report = _report("local", replies, str(shots(page, "finished")))
    assert len(replies) >= 3 and report["measured"] >= 1, (report, observations[:20])
