from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flotilla.ui.offline import locked_down, offline, strip_external_links

INDEX = b"""<head>
<link rel="preconnect" href="https://fonts.googleapis.com" />
<link rel="preconnect" href="https://fonts.gstatic.com" crossorigin />
<link rel="stylesheet" href="./styles.css" />
</head>"""


def _app(body: bytes, content_type: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


def _call(app: Any, path: str) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.update(status=status, headers=dict(headers))

    body = b"".join(app({"PATH_INFO": path}, start_response))
    return seen["status"], seen["headers"], body


def test_html_loses_outside_links_and_keeps_the_rest() -> None:
    assert strip_external_links(INDEX) == b'<head>\n<link rel="stylesheet" href="./styles.css" />\n</head>'
    status, headers, body = _call(offline(_app(INDEX, "text/html; charset=utf-8")), "/")
    assert status == "200 OK" and b"googleapis" not in body and headers["Content-Length"] == str(len(body))


def test_other_responses_pass_untouched_and_the_stylesheet_is_served() -> None:
    script = b"https://fonts.googleapis.com in a string"
    assert _call(offline(_app(script, "application/javascript")), "/x.js")[2] == script
    status, headers, body = _call(offline(_app(b"", "text/plain")), "/__flotilla__/ui.css")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/css") and b".transcript" in body
    assert _call(offline(_app(b"", "text/plain")), "/__flotilla__/other.txt")[0].startswith("404")


def test_the_csp_keeps_every_source_to_the_page_s_own_origin() -> None:
    mesop = (
        "default-src 'self'; font-src 'self' fonts.gstatic.com data:; frame-src * blob:; "
        "img-src 'self' data: https: http: blob:; style-src 'self' 'unsafe-inline' fonts.googleapis.com "
        "/__flotilla__/ui.css; script-src 'self' 'nonce-abc'; require-trusted-types-for 'script'"
    )
    csp = dict(part.strip().split(" ", 1) for part in locked_down(mesop).split(";"))
    assert csp["img-src"] == "'self' data: blob:" and csp["frame-src"] == "'none'"
    assert csp["style-src"] == "'self' 'unsafe-inline'" and csp["font-src"] == "'self' data:"
    assert csp["script-src"] == "'self' 'nonce-abc'" and csp["require-trusted-types-for"] == "'script'"
    assert "http" not in locked_down(mesop) and "googleapis" not in locked_down(mesop)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Security-Policy", mesop)])
        return [INDEX]

    _, headers, _ = _call(offline(app), "/")
    assert headers["Content-Security-Policy"] == locked_down(mesop)
