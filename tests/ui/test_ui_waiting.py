"""The run list badges a run that waits for the person "waiting for you", not "running"."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import Page, expect

from flotilla.devstack import LocalStack
from support import Api
from ui.browsing import WAIT_MS


async def _asking_run(stack: LocalStack) -> str:
    async with Api(stack.gateway_url, stack.dev_api_key) as api:
        run_id = await api.start("load", n=1, asks=1)
        await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
        return run_id


def test_the_run_list_shows_a_run_waiting_for_the_person(ui_stack: LocalStack, page: Page) -> None:
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        run_id = pool.submit(asyncio.run, _asking_run(ui_stack)).result()
    page.goto(ui_stack.ui_url)
    page.get_by_label("API key").fill(ui_stack.dev_api_key)  # the identity that started it
    page.get_by_role("button", name="Sign in with key").click()
    entry = page.locator(".sidebar").get_by_role("button").filter(has_text=run_id[-8:])
    expect(entry).to_be_visible(timeout=WAIT_MS)
    for _ in range(50):  # the record is marked just after the question is stored
        if entry.get_by_text("waiting for you").count():
            break
        page.wait_for_timeout(200)
        page.get_by_role("button", name="Refresh").click()
    expect(entry.get_by_text("waiting for you")).to_be_visible()
    expect(entry.get_by_text("running", exact=True)).to_have_count(0)
    entry.click()  # answered from the page: the badge goes back to the run's status
    field = page.get_by_label("question 1 of 1")
    expect(field).to_be_enabled(timeout=WAIT_MS)
    field.fill("done")
    field.press("Enter")
    expect(entry.get_by_text("completed")).to_be_visible(timeout=WAIT_MS)
