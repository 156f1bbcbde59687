"""WSGI middleware that keeps the page offline, locks its CSP down, and serves the UI's stylesheet.

Mesop's index.html links Google Fonts (the Material Symbols icon font); the page uses no icons,
so those links are dropped and nothing is fetched from outside 127.0.0.1. The stylesheet is
served from this package at STATIC_PREFIX. Mesop's Content-Security-Policy allows images from
any host (an agent's markdown image would be fetched by the person's browser), frames from
anywhere, Google Fonts, and lists the stylesheet as a path-only source that Chromium rejects;
`locked_down` keeps every source to the page's own origin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

STATIC_PREFIX = "/__flotilla__/"
_STATIC_FILES = {"ui.css": "text/css; charset=utf-8"}
_EXTERNAL = (b"fonts.googleapis.com", b"fonts.gstatic.com")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def strip_external_links(html: bytes) -> bytes:
    """index.html without the lines that name an outside host."""
    kept = [line for line in html.splitlines(keepends=True) if not any(host in line for host in _EXTERNAL)]
    return b"".join(kept)


_OWN = {
    "img-src": "'self' data: blob:",
    "media-src": "'self'",
    "font-src": "'self' data:",
    "style-src": "'self' 'unsafe-inline'",
    "frame-src": "'none'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}


def locked_down(csp: str) -> str:
    """Mesop's CSP with every fetch source its own origin only (its script nonce and trusted types kept)."""
    directives: dict[str, str] = {}
    for part in csp.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives[name] = value.strip()
    directives.update(_OWN)
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def _with_csp(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, locked_down(v) if k.lower() == "content-security-policy" else v) for k, v in headers]


def _static(name: str, start_response: StartResponse) -> Iterable[bytes]:
    content_type = _STATIC_FILES.get(name)
    if content_type is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    body = (Path(__file__).parent / name).read_bytes()
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def offline(app: WsgiApp) -> WsgiApp:
    def wrapped(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(STATIC_PREFIX):
            return _static(path[len(STATIC_PREFIX) :], start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: None  # the legacy write() callable; Flask does not use it

        result = app(environ, capture)
        headers = _with_csp(captured.get("headers", []))
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        encoding = next((v for k, v in headers if k.lower() == "content-encoding"), "")
        if not content_type.startswith("text/html") or encoding:
            start_response(captured["status"], headers, captured.get("exc_info"))
            return result
        try:
            body = strip_external_links(b"".join(result))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers, captured.get("exc_info"))
        return [body]

    return wrapped
