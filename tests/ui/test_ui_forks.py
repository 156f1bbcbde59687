"""Forks in the browser: under a finished run, fork it at an answered question and answer it
differently; the fork shows the same events up to there, then goes its own way."""

from __future__ import annotations

import json

from playwright.sync_api import Page, expect

from flotilla.devstack import LocalStack
from ui.browsing import WAIT_MS, Shots, sign_in, start_workflow, wait_finished


def test_fork_at_a_question_and_answer_differently(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    assert ui_stack.config.ui_password
    sign_in(page, ui_stack.ui_url, "developer", ui_stack.config.ui_password)
    source = start_workflow(page, "load", params_json=json.dumps({"n": 1, "size": 3, "asks": 1}))
    field = page.get_by_label("question 1 of 1")
    expect(field).to_be_enabled(timeout=WAIT_MS)
    field.fill("apples")
    field.press("Enter")
    wait_finished(page)
    expect(page.get_by_text("echo: apples")).to_be_visible()
    fork = page.get_by_role("button", name="Answer “question 1 of 1” differently")
    expect(fork).to_be_visible()
    shots(page, "finished, fork offered")

    fork.click()
    page.wait_for_url(lambda url: "run=" in url and source not in url, timeout=WAIT_MS)
    expect(page.get_by_text(f"This run was forked from run {source}")).to_be_visible(timeout=WAIT_MS)
    again = page.get_by_label("question 1 of 1")
    expect(again).to_be_enabled(timeout=WAIT_MS)  # asked again, in the fork
    expect(page.get_by_text("xxx", exact=True)).to_have_count(1)  # the message before it, kept once
    again.fill("pears")
    again.press("Enter")
    wait_finished(page)
    expect(page.get_by_text("echo: pears")).to_be_visible()
    expect(page.get_by_text("echo: apples")).to_have_count(0)
    shots(page, "fork answered differently")
