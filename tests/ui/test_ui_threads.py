"""Threads in the browser: "Reply" under a finished run starts the thread's next run, shown in the
same conversation (the earlier run above it), and a reload keeps the whole thread."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from flotilla.devstack import LocalStack
from ui.browsing import WAIT_MS, Shots, sign_in


def test_reply_under_a_finished_run_continues_the_conversation(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    assert ui_stack.config.ui_password
    sign_in(page, ui_stack.ui_url, "developer", ui_stack.config.ui_password)
    page.locator(".catalogue").get_by_role("button", name=re.compile(r"^learning_chat\b")).click()
    expect(page.get_by_label("Turns")).to_have_value("3", timeout=WAIT_MS)
    page.get_by_label("Turns").fill("1")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"[?&]run="), timeout=WAIT_MS)
    match = re.search(r"[?&]run=([^&]+)", page.url)
    assert match, page.url
    first = match.group(1)
    topic = page.get_by_label("What do you want to learn about?")
    expect(topic).to_be_enabled(timeout=WAIT_MS)
    topic.fill("Volcanoes")
    topic.press("Enter")
    expect(page.get_by_text("Run completed", exact=True)).to_have_count(1, timeout=WAIT_MS)
    reply = page.get_by_label("Reply")
    expect(reply).to_be_visible()
    shots(page, "finished, reply offered")

    reply.fill("Why do they erupt?")
    page.get_by_role("button", name="Reply", exact=True).click()
    page.wait_for_url(re.compile(r"[?&]run=(?!" + first + r")"), timeout=WAIT_MS)
    expect(page.get_by_text("You said: Why do they erupt?")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("About Volcanoes, the person asks: Why do they erupt?")).to_be_visible(timeout=WAIT_MS)
    # One conversation: the first run's exchange stays above the reply's.
    expect(page.get_by_text("Teach me about Volcanoes.")).to_be_visible()
    expect(page.get_by_text("You answered: Volcanoes")).to_be_visible()
    expect(page.get_by_text("Run completed", exact=True)).to_have_count(2, timeout=WAIT_MS)
    expect(page.get_by_label("What do you want to learn about?")).to_be_disabled()  # not asked again
    shots(page, "reply completed in the same conversation")

    page.reload()  # the reply's run id is in the URL: the whole thread comes back
    expect(page.get_by_text("Teach me about Volcanoes.")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("You said: Why do they erupt?")).to_be_visible()
    expect(page.get_by_text("Run completed", exact=True)).to_have_count(2, timeout=WAIT_MS)
