from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flotilla.ui.offline import offline, strip_external_links

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
