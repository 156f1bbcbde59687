"""Driving the UI in Chromium: launch flags, screenshots, and the steps tests share."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Page, Route, expect

CHROMIUM = os.environ.get("FLOTILLA_CHROMIUM", "/usr/bin/chromium")
# Offline and quiet: no Google services, every host but 127.0.0.1 unresolvable.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def chromium() -> str:
    """Debian's chromium, installed from Debian's archive the first time it is missing (never
    `playwright install`), so `./pants test ::` needs nothing installed by hand."""
    if os.access(CHROMIUM, os.X_OK) or "FLOTILLA_CHROMIUM" in os.environ:
        return CHROMIUM
    with open(Path(tempfile.gettempdir()) / "flotilla-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test processes run in parallel: one installs
        if not os.access(CHROMIUM, os.X_OK):
            sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
            apt = [*sudo, "/usr/bin/apt-get", "-o", "DPkg::Lock::Timeout=600", "-qq"]
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            subprocess.run([*apt, "update"], check=True, env=env)
            packages = ["chromium", "fonts-dejavu-core"]
            subprocess.run([*apt, "install", "-y", "--no-install-recommends", *packages], check=True, env=env)
    return CHROMIUM


ALICE_PASSWORD = "alice-ui-password"
"""The UI user `alice` the browser tests' stack configures (identity alice)."""
WAIT_MS = 60_000
"""Generous: the machine is small and shared; a wait ends as soon as its condition holds."""


def screenshot_dir() -> Path:
    """$FLOTILLA_SCREENSHOT_DIR, else dist/screenshots of the repo (found from here or the working
    directory), else a temporary folder (a Pants sandbox without the variable)."""
    explicit = os.environ.get("FLOTILLA_SCREENSHOT_DIR")
    if explicit:
        folder = Path(explicit)
    else:
        roots = [p for start in (Path.cwd(), Path(__file__).resolve()) for p in (start, *start.parents)]
        repo = next((p for p in roots if (p / "pants.toml").is_file()), None)
        folder = repo / "dist" / "screenshots" if repo else Path(tempfile.gettempdir()) / "flotilla-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Shots:
    """Numbered screenshots of one test's steps: `<test>-<nn>-<step>.png`."""

    folder: Path
    test: str
    taken: list[Path] = field(default_factory=list)

    def __call__(self, page: Page, step: str) -> Path:
        path = self.folder / f"{self.test}-{len(self.taken) + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower())}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        print(f"screenshot: {path}")
        return path


class OutsideRequests(list[str]):
    """Every request the page tried to make beyond 127.0.0.1 (each aborted)."""

    def route(self, route: Route) -> None:
        url = route.request.url
        if re.match(r"^(https?|wss?)://127\.0\.0\.1[:/]", url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.append(url)
            route.abort()


def sign_in(page: Page, ui_url: str, username: str, password: str) -> None:
    page.goto(ui_url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text(f"Signed in as {username}")).to_be_visible(timeout=WAIT_MS)


def start_workflow(page: Page, workflow: str, *, params_json: str | None = None) -> str:
    """Pick a workflow in the catalogue, start it, wait for its page; returns the run id (from the URL)."""
    page.get_by_role("button", name="New run").click()
    page.locator(".catalogue").get_by_role("button", name=re.compile(rf"^{re.escape(workflow)}\b")).click()
    expect(page.get_by_text(f"Params of {workflow}")).to_be_visible(timeout=WAIT_MS)
    if params_json is not None:
        page.get_by_label("Params (a JSON object)").fill(params_json)
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"[?&]run="), timeout=WAIT_MS)
    expect(page.locator(".run-head")).to_be_visible(timeout=WAIT_MS)
    match = re.search(r"[?&]run=([^&]+)", page.url)
    assert match, page.url
    return match.group(1)


def wait_finished(page: Page, status: str = "completed") -> None:
    expect(page.get_by_text(f"Run {status}", exact=True)).to_be_visible(timeout=WAIT_MS)


CONTROL_ROLES = frozenset({"button", "textbox", "radio", "checkbox", "combobox", "spinbutton", "link", "searchbox"})


def controls(page: Page) -> list[tuple[str, str]]:
    """(role, accessible name) of every control, as Chromium's accessibility tree computes them."""
    cdp = page.context.new_cdp_session(page)
    try:
        tree = cdp.send("Accessibility.getFullAXTree")
    finally:
        cdp.detach()
    found = []
    for node in tree["nodes"]:
        role = str(node.get("role", {}).get("value", ""))
        if node.get("ignored") or role not in CONTROL_ROLES:
            continue
        found.append((role, str(node.get("name", {}).get("value", "")).strip()))
    return found


_MARK_FOCUSED = "() => document.activeElement && document.activeElement.setAttribute('data-tab-reached', '1')"
_UNREACHED = """() => [...document.querySelectorAll('button, input, textarea, [role=combobox], a[href]')]
  .filter(el => !el.disabled && el.getClientRects().length > 0 && el.getAttribute('tabindex') !== '-1')
  .filter(el => !el.closest('[data-tab-reached]') && !el.querySelector('[data-tab-reached]'))
  .filter(el => !(el.type === 'radio' && el.closest('[role=radiogroup]')?.querySelector('[data-tab-reached]')))
  .map(el => el.outerHTML.slice(0, 160))"""


def unreachable_by_tab(page: Page) -> list[str]:
    """Press Tab through the whole page; the enabled, visible controls focus never reached (a radio
    group counts as reached through any of its buttons: arrows move within it)."""
    page.evaluate(
        "() => document.querySelectorAll('[data-tab-reached]').forEach(e => e.removeAttribute('data-tab-reached'))"
    )
    count = int(page.evaluate("() => document.querySelectorAll('button, input, textarea, [role=combobox]').length"))
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(count * 2 + 10):
        page.keyboard.press("Tab")
        page.evaluate(_MARK_FOCUSED)
    return list(page.evaluate(_UNREACHED))
