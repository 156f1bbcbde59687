"""What the page refuses to do for an agent: fetch images its markdown or HTML names (a prompt
injection's way to send the conversation away), or break its own CSP."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from flotilla.devstack import LocalStack
from ui.browsing import WAIT_MS, Shots, sign_in, wait_finished


@pytest.fixture
def collector() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on loopback that records every request: the exfiltration target."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pixel.png", seen
    finally:
        server.shutdown()
        server.server_close()


def test_agent_markdown_cannot_make_the_browser_fetch_an_image(
    ui_stack: LocalStack, page: Page, shots: Shots, collector: tuple[str, list[str]]
) -> None:
    url, seen = collector
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    assert ui_stack.config.ui_password
    sign_in(page, ui_stack.ui_url, "developer", ui_stack.config.ui_password)
    csp = page.request.get(ui_stack.ui_url).headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in csp and "http:" not in csp and "https:" not in csp, csp

    page.get_by_role("button", name="New run").click()
    page.locator(".catalogue").get_by_role("button", name=re.compile(r"^markdown_injection\b")).click()
    page.get_by_label("Url").fill(url)
    page.get_by_role("button", name="Start run").click()
    wait_finished(page)
    message = page.locator(".transcript").get_by_text("Summary done.")
    expect(message).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("(image not shown)")).to_be_visible()
    expect(page.get_by_text("(image not shown: logo)")).to_be_visible()
    expect(page.get_by_text('<img src="' + url)).to_have_count(1)  # shown as text, not an element
    assert page.locator(".transcript img").count() == 0
    shots(page, "injected images shown as words")
    page.reload()  # the replayed transcript is the same
    expect(page.get_by_text("(image not shown: logo)")).to_be_visible(timeout=WAIT_MS)
    assert seen == [], f"the browser fetched {seen}"
    assert violations == [], violations
    # (the page fixture fails the test if anything beyond 127.0.0.1 was asked for: evil.example)
