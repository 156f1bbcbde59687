"""Runs in the browser: start, answer, watch live, reload mid-run, approve, cancel, history."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import Page, expect

from flotilla.devstack import LocalStack
from support import Api
from ui.browsing import WAIT_MS, Shots, sign_in, start_workflow, wait_finished


def _developer(page: Page, stack: LocalStack) -> None:
    assert stack.config.ui_password
    sign_in(page, stack.ui_url, "developer", stack.config.ui_password)


def _developer_by_key(page: Page, stack: LocalStack) -> None:
    """Signed in with the developer's API key: the identity (`key:developer`) that owns the runs
    the test starts over REST. (Signed in by password, the UI acts for `key:ui/developer`.)"""
    page.goto(stack.ui_url)
    page.get_by_label("API key").fill(stack.dev_api_key)
    page.get_by_role("button", name="Sign in with key").click()
    expect(page.get_by_text("Signed in as developer")).to_be_visible(timeout=WAIT_MS)


def test_learning_chat_from_catalogue_to_completion(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    _developer(page, ui_stack)
    shots(page, "signed in")
    page.locator(".catalogue").get_by_role("button", name=re.compile(r"^learning_chat\b")).click()
    expect(page.get_by_text("A student and a teacher agent talk about a topic you choose")).to_be_visible()
    expect(page.get_by_label("Turns")).to_have_value("3", timeout=WAIT_MS)
    page.get_by_label("Turns").fill("2")
    shots(page, "catalogue and params")
    page.get_by_role("button", name="Start run").click()

    topic = page.get_by_label("What do you want to learn about?")
    expect(topic).to_be_enabled(timeout=WAIT_MS)
    for suggestion in ("Math", "Physics", "History"):
        expect(page.get_by_role("button", name=suggestion, exact=True)).to_be_visible()
    shots(page, "asked for a topic")
    topic.fill("Volcanoes")
    topic.press("Enter")

    expect(page.get_by_text("You answered: Volcanoes")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("student → teacher").first).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Teach me about Volcanoes.")).to_be_visible()
    expect(page.get_by_text("teacher → student").first).to_be_visible(timeout=WAIT_MS)
    wait_finished(page)
    expect(topic).to_be_disabled()  # answered: the controls stay, disabled
    expect(page.get_by_role("button", name="Physics", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.locator(".sidebar").get_by_text("completed").first).to_be_visible()
    expect(page.get_by_text("Started learning_chat (turns: 2)")).to_be_visible()
    # AG2's termination message in words, not JSON.
    expect(page.get_by_text("The chat ended: Maximum turns (2) reached.", exact=True)).to_be_visible()
    expect(page.locator(".transcript").get_by_text('"type"')).to_have_count(0)
    expect(page.locator(".sidebar").get_by_text("turns: 2").first).to_be_visible()
    # The chat's result is its last reply: said once, not repeated in the completion card.
    expect(page.get_by_text("Its result is the last message above.")).to_be_visible()
    # What the run's LLM calls used (the scripted model counts words as tokens).
    expect(page.get_by_text(re.compile(r"LLM use: scripted: \d+ calls, \d+ \+ \d+ tokens"))).to_be_visible()
    shots(page, "transcript completed")


def test_reload_mid_run_loses_nothing_and_asks_nothing_twice(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    _developer(page, ui_stack)
    start_workflow(page, "paced_chat", params_json=json.dumps({"n": 6, "delay_s": 0.7, "ask_at": 3}))
    expect(page.get_by_text("paced message 2 of 6")).to_be_visible(timeout=WAIT_MS)
    page.reload()
    expect(page.get_by_text("paced message 2 of 6")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("paced message 1 of 6")).to_have_count(1)
    shots(page, "reloaded while agents talk")

    questions = page.locator(".item-question")
    expect(questions).to_have_count(1, timeout=WAIT_MS)
    page.reload()  # with the question open
    expect(page.get_by_role("button", name="faster", exact=True)).to_be_enabled(timeout=WAIT_MS)
    expect(questions).to_have_count(1)
    page.get_by_role("button", name="yes", exact=True).click()
    expect(page.get_by_text("You answered: yes")).to_be_visible(timeout=WAIT_MS)
    page.reload()  # after answering: the answer is there, nothing is asked again
    expect(page.get_by_text("You answered: yes")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("button", name="yes", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Send answer")).to_be_disabled()
    wait_finished(page)
    for i in range(1, 7):
        expect(page.get_by_text(f"paced message {i} of 6", exact=True)).to_have_count(1)
    expect(questions).to_have_count(1)
    shots(page, "completed after reloads")


def test_multiple_choice_approval_of_a_tool_call(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    _developer(page, ui_stack)
    start_workflow(page, "ag2_tool_approval")
    expect(page.get_by_text("Allow get_weather(city='Paris')?")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text(re.compile(r"^get_weather"))).to_be_visible()  # the suggested call's card
    expect(page.get_by_text('"city": "Paris"')).to_be_visible()
    expect(page.get_by_role("radio", name="reject")).to_be_checked()  # the default, preselected
    shots(page, "approval asked")
    page.get_by_role("radio", name="approve").check()
    page.get_by_role("button", name="Send choice").click()
    expect(page.get_by_text("You answered: approve")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("result: sunny in Paris")).to_be_visible(timeout=WAIT_MS)
    wait_finished(page)
    expect(page.get_by_role("radio", name="approve")).to_be_disabled()
    shots(page, "approved and completed")


def test_every_kind_multi_select_and_password(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    _developer(page, ui_stack)
    start_workflow(page, "every_kind")
    secret = page.get_by_label("password?")
    expect(secret).to_be_visible(timeout=WAIT_MS)
    assert secret.get_attribute("type") == "password"
    for text in ("alice → bob", "note: system notice", "a visible error", "with details", "result: 3"):
        expect(page.get_by_text(text).first).to_be_visible()
    # The start is said in words; a run waiting on its person says so.
    expect(page.get_by_text("Started every_kind")).to_be_visible()
    expect(page.locator(".run-head").get_by_text("waiting for you")).to_be_visible()
    secret.fill("s3cret-value")
    secret.press("Enter")
    expect(page.get_by_text("pick some")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("checkbox", name="b")).to_be_checked()  # the default
    expect(page.get_by_role("checkbox", name="a")).not_to_be_checked()
    page.get_by_role("checkbox", name="a").check()
    expect(page.get_by_role("checkbox", name="a")).to_be_checked()
    shots(page, "multi select")
    page.get_by_role("button", name="Send choice").click()
    expect(page.get_by_text("You answered: a,b")).to_be_visible(timeout=WAIT_MS)
    wait_finished(page)
    expect(page.get_by_text("s3cret-value")).to_have_count(0)  # never shown
    expect(page.get_by_text('"secret_length": 12')).to_be_visible()
    shots(page, "every kind completed")


def test_cancel_a_running_run(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    _developer(page, ui_stack)
    start_workflow(page, "slow_messages", params_json=json.dumps({"n": 5000, "delay_s": 0.1}))
    expect(page.get_by_text("message 3", exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("The agents are working…")).to_be_visible()
    shots(page, "running")
    page.get_by_role("button", name="Cancel run").click()
    wait_finished(page, "cancelled")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.get_by_text("The agents are working…")).to_have_count(0)
    shots(page, "cancelled")


def test_history_replays_finished_runs_and_reattaches_to_running_ones(
    ui_stack: LocalStack, page: Page, shots: Shots
) -> None:
    async def start_two() -> tuple[str, str]:
        async with Api(ui_stack.gateway_url, ui_stack.dev_api_key) as api:  # identity "key:developer"
            finished = await api.start("ag2_chat")
            await api.stream(finished)
            running = await api.start("paced_chat", n=8, delay_s=0.8, ask_at=6)
            return finished, running

    # Playwright's sync API owns this thread's event loop: the API client runs in another thread.
    with ThreadPoolExecutor(1) as pool:
        finished, running = pool.submit(asyncio.run, start_two()).result()
    _developer_by_key(page, ui_stack)
    sidebar = page.locator(".sidebar")
    entries = sidebar.get_by_role("button", name=re.compile(r"(paced_chat|ag2_chat)"))
    expect(entries.first).to_contain_text("paced_chat", timeout=WAIT_MS)  # newest first
    expect(sidebar.get_by_role("button", name=re.compile(rf"{finished[-8:]}"))).to_contain_text("completed")

    sidebar.get_by_role("button", name=re.compile(rf"{finished[-8:]}")).click()
    expect(page.get_by_text("It is 4.")).to_be_visible(timeout=WAIT_MS)  # replayed
    wait_finished(page)
    assert f"run={finished}" in page.url
    shots(page, "finished run replayed")

    sidebar.get_by_role("button", name=re.compile(rf"{running[-8:]}")).click()
    expect(page.get_by_text("paced message 1 of 8")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("paced message 5 of 8")).to_be_visible(timeout=WAIT_MS)  # live, after opening
    page.get_by_role("button", name="yes", exact=True).click()
    wait_finished(page)
    for i in range(1, 9):
        expect(page.get_by_text(f"paced message {i} of 8", exact=True)).to_have_count(1)
    shots(page, "running run reattached and completed")
