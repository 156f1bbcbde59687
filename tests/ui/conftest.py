"""One stack with the UI and one Chromium for the browser tests; a fresh browser context (no
cookies) per test, which may make no request beyond 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from flotilla.devstack import LocalStack
from support import local_stack
from ui.browsing import ALICE_PASSWORD, CHROMIUM_ARGS, chromium, OutsideRequests, Shots, screenshot_dir


@pytest.fixture(scope="session")
def ui_stack() -> Iterator[LocalStack]:
    users = [{"username": "alice", "identity": "alice", "password": ALICE_PASSWORD}]
    with local_stack(workers=2, with_ui=True, ui_users=users) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside = OutsideRequests()
    context.route("**/*", outside.route)
    opened = context.new_page()
    yield opened
    context.close()
    assert not outside, f"the page asked for outside resources: {outside}"


@pytest.fixture()
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(screenshot_dir(), request.node.name.removeprefix("test_"))
