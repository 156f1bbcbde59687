from __future__ import annotations

from flotilla.llm._local import end_at_sentence


def test_a_reply_cut_at_the_cap_ends_at_its_last_sentence() -> None:
    text = "Volcanoes form where magma rises. They erupt when pressure builds. The biggest one is"
    assert end_at_sentence(text) == "Volcanoes form where magma rises. They erupt when pressure builds."
    assert end_at_sentence('He said "stop!" and then the') == 'He said "stop!"'


def test_a_reply_with_no_sentence_end_worth_keeping_gets_an_ellipsis() -> None:
    assert end_at_sentence("One long thought that never") == "One long thought that never…"
    assert end_at_sentence("Hi. " + "and then " * 20) == ("Hi. " + "and then " * 20).rstrip() + "…"
    assert end_at_sentence("Version 2.5 is out and it") == "Version 2.5 is out and it…"  # a dot inside a number
