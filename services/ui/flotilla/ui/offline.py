"""WSGI middleware that keeps the page offline and serves the UI's own stylesheet.

Mesop's index.html links Google Fonts (the Material Symbols icon font); the page uses no icons,
so those links are dropped and nothing is fetched from outside 127.0.0.1. The stylesheet is
served from this package at STATIC_PREFIX.
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
        headers = captured.get("headers", [])
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
