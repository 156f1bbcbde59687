"""Signing in (password, API key), a wrong password, signing out; keyboard reach and names."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from flotilla.devstack import LocalStack
from ui.browsing import ALICE_PASSWORD, WAIT_MS, Shots, controls, unreachable_by_tab


def test_wrong_password_then_api_key_then_sign_out(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    page.goto(ui_stack.ui_url)
    page.get_by_label("Username").fill("developer")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text("Wrong username or password.")).to_be_visible(timeout=WAIT_MS)
    shots(page, "wrong password")

    page.get_by_label("API key").fill("flk_not_a_key")
    page.get_by_role("button", name="Sign in with key").click()
    expect(page.get_by_text("That API key was not accepted.")).to_be_visible(timeout=WAIT_MS)

    page.get_by_label("API key").fill("flk_test_alice")  # alice's gateway key (tests/support.py)
    page.get_by_role("button", name="Sign in with key").click()
    expect(page.get_by_text("Signed in as alice")).to_be_visible(timeout=WAIT_MS)
    shots(page, "signed in with key")

    page.reload()  # the session survives a reload (HttpOnly cookie)
    expect(page.get_by_text("Signed in as alice")).to_be_visible(timeout=WAIT_MS)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible(timeout=WAIT_MS)
    page.reload()  # and signing out ends it for good
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible(timeout=WAIT_MS)
    shots(page, "signed out")


def test_keyboard_reaches_every_control_and_each_has_a_name(ui_stack: LocalStack, page: Page, shots: Shots) -> None:
    page.goto(ui_stack.ui_url)
    expect(page.get_by_label("Username")).to_be_visible(timeout=WAIT_MS)
    assert unreachable_by_tab(page) == []
    named = controls(page)
    assert named and [c for c in named if not c[1]] == []
    assert {("textbox", "Username"), ("textbox", "Password"), ("button", "Sign in")} <= set(named)

    # Sign in with the keyboard alone.
    page.get_by_label("Username").focus()
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type(ALICE_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Signed in as alice")).to_be_visible(timeout=WAIT_MS)

    # The catalogue and a params form.
    page.locator(".catalogue").get_by_role("button", name=re.compile(r"^learning_chat\b")).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Turns")).to_have_value("3", timeout=WAIT_MS)
    shots(page, "catalogue")
    assert unreachable_by_tab(page) == []
    named = controls(page)
    assert [c for c in named if not c[1]] == []
    assert {("button", "Start run"), ("button", "Sign out"), ("button", "New run")} <= set(named)

    # A question: its text field, Send and the suggestions, by keyboard.
    page.get_by_role("button", name="Start run").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Physics")).to_be_enabled(timeout=WAIT_MS)
    shots(page, "question")
    assert unreachable_by_tab(page) == []
    named = controls(page)
    assert [c for c in named if not c[1]] == []
    assert ("textbox", "What do you want to learn about?") in named and ("button", "Cancel run") in named
    page.get_by_role("button", name="History").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("You answered: History")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Run completed", exact=True)).to_be_visible(timeout=WAIT_MS)
    shots(page, "answered by keyboard")
