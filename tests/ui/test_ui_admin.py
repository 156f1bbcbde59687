"""The admin view in the browser: dead letters listed, a failed run retried with one click; a
person signed in without the admin scope sees neither."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import Page, expect

from flotilla.devstack import LocalStack
from flotilla.ids import new_run_id
from flotilla.jetstream import enqueue
from flotilla.protocol import Job
from support import admin
from ui.browsing import WAIT_MS, Shots, sign_in, start_workflow, wait_finished


def _admin(page: Page, stack: LocalStack) -> None:
    """The developer's API key carries every scope, admin too."""
    page.goto(stack.ui_url)
    page.get_by_label("API key").fill(stack.dev_api_key)
    page.get_by_role("button", name="Sign in with key").click()
    expect(page.get_by_text("Signed in as developer")).to_be_visible(timeout=WAIT_MS)


def test_an_admin_retries_a_failed_run(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    _admin(page, ui_stack)
    failed = start_workflow(page, "ask_briefly", params_json=json.dumps({"timeout_s": 1}))
    wait_finished(page, "failed")
    retry = page.get_by_role("button", name="Retry run")
    expect(retry).to_be_visible()
    shots(page, "failed, retry offered")
    retry.click()
    page.wait_for_url(lambda url: "run=" in url and failed not in url, timeout=WAIT_MS)
    expect(page.get_by_text(f"This run was forked from run {failed}")).to_be_visible(timeout=WAIT_MS)
    field = page.get_by_label("quick?")
    expect(field).to_be_enabled(timeout=WAIT_MS)  # asked again, with its whole timeout
    field.fill("done")
    field.press("Enter")
    wait_finished(page)
    shots(page, "retried run completed")

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        orphan = pool.submit(asyncio.run, _orphan_job(ui_stack)).result()  # a job with no run: dead-lettered
    page.get_by_role("button", name="Dead letters").click()
    # The view's heading (the nav button has the same words).
    expect(page.locator(".mat-headline-6").get_by_text("Dead letters", exact=True)).to_be_visible(timeout=WAIT_MS)
    for _ in range(50):  # the worker dead-letters it within moments; the view lists on opening
        if page.get_by_text(re.compile(f"orphan +load +run {orphan}")).count():
            break
        page.wait_for_timeout(200)
        page.get_by_role("button", name="Dead letters").click()
    expect(page.get_by_text(re.compile(f"orphan +load +run {orphan}"))).to_be_visible(timeout=WAIT_MS)
    shots(page, "dead letters")
    page.get_by_role("button", name="Retry its run").first.click()  # no such run: said so
    expect(page.get_by_text(re.compile(r"^Cannot retry: "))).to_be_visible(timeout=WAIT_MS)


async def _orphan_job(stack: LocalStack) -> str:
    run_id = new_run_id()
    nc = await admin(stack)
    try:
        await enqueue(nc.jetstream(), Job(run_id=run_id, workflow="load"))
    finally:
        await nc.close()
    return run_id


def test_no_admin_controls_without_the_admin_scope(ui_stack: LocalStack, page: Page) -> None:
    assert ui_stack.config.ui_password
    sign_in(page, ui_stack.ui_url, "developer", ui_stack.config.ui_password)  # user scopes only
    start_workflow(page, "ask_briefly", params_json=json.dumps({"timeout_s": 1}))
    wait_finished(page, "failed")
    expect(page.get_by_role("button", name="Retry run")).to_have_count(0)
    expect(page.get_by_role("button", name="Dead letters")).to_have_count(0)
