from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from flotilla.llm import LlmError, OpenAIBackend, ToolCall

REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m-1",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
            },
        }
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}


def backend_answering(status: int, body: dict[str, Any], seen: list[httpx.Request]) -> OpenAIBackend:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="http://endpoint.test/v1",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
    )
    return OpenAIBackend(model="m-1", client=client)


def test_sends_an_openai_request_and_reads_the_reply() -> None:
    async def scenario() -> None:
        seen: list[httpx.Request] = []
        backend = backend_answering(200, REPLY, seen)
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        completion = await backend.complete([{"role": "user", "content": "hi"}], tools=tools, temperature=0.0)
        await backend.aclose()
        sent = json.loads(seen[0].content)
        assert seen[0].url.path == "/v1/chat/completions"
        assert seen[0].headers["authorization"] == "Bearer sk-test"
        assert sent["model"] == "m-1" and sent["tools"] == tools and sent["temperature"] == 0.0
        assert completion.tool_calls == (ToolCall(id="c1", name="f", arguments='{"x": 1}'),)
        assert (completion.model, completion.prompt_tokens, completion.completion_tokens) == ("m-1", 7, 3)

    asyncio.run(scenario())


def test_an_endpoint_error_is_an_llm_error() -> None:
    async def scenario() -> None:
        backend = backend_answering(401, {"error": {"message": "bad key"}}, [])
        with pytest.raises(LlmError, match="bad key"):
            await backend.complete([{"role": "user", "content": "hi"}])
        await backend.aclose()

    asyncio.run(scenario())
