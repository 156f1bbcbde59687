"""FlotillaModelClient driving real AG2 agents with the scripted backend (no network)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from autogen import Agent, ConversableAgent, GroupChat, GroupChatManager

from flotilla.llm import (
    Completion,
    LlmService,
    Message,
    ScriptedBackend,
    group_chat_options,
    llm_config,
    llm_run,
    register_llm,
)

NAMES = ("alice", "bob", "carol")
LESSON = ["What is gravity?", "Gravity pulls masses together.", "Why do apples fall?", "The Earth pulls them."]


def learning_chat(service: LlmService) -> list[tuple[str, str]]:
    student = ConversableAgent("student", llm_config=llm_config(), human_input_mode="NEVER")
    teacher = ConversableAgent("teacher", llm_config=llm_config(), human_input_mode="NEVER")
    register_llm(student, llm=service)
    register_llm(teacher, llm=service)
    result = student.initiate_chat(teacher, message="Teach me physics.", max_turns=2, silent=True)
    return [(str(m["name"]), str(m["content"])) for m in result.chat_history]


def test_a_two_agent_chat_follows_the_script() -> None:
    service = LlmService(ScriptedBackend(LESSON))
    recorded: list[tuple[list[Message], Completion]] = []
    with llm_run(recorder=lambda messages, completion: recorded.append((messages, completion))):
        history = learning_chat(service)
    service.close()
    assert history == [
        ("student", "Teach me physics."),
        ("teacher", "What is gravity?"),
        ("student", "Gravity pulls masses together."),
        ("teacher", "Why do apples fall?"),
    ]
    # max_turns=2: teacher, student, teacher asked the model; each request and reply recorded.
    assert [completion.text for _, completion in recorded] == LESSON[:3]
    assert recorded[0][0][-1] == {"content": "Teach me physics.", "role": "user", "name": "student"}
    json.dumps([(messages, completion.to_dict()) for messages, completion in recorded])  # recordable as JSON


def test_concurrent_chats_share_one_service_and_each_follows_the_script() -> None:
    service = LlmService(ScriptedBackend(LESSON))

    def run(_: int) -> list[tuple[str, str]]:
        with llm_run():
            return learning_chat(service)

    with ThreadPoolExecutor(max_workers=6) as pool:
        histories = list(pool.map(run, range(12)))
    service.close()
    assert all(history == histories[0] for history in histories)
    assert [content for _, content in histories[0][1:]] == LESSON[:3]


def test_a_scripted_tool_call_is_executed_and_answered() -> None:
    script: list[Any] = [
        {"content": None, "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
        "The sum is 5. TERMINATE",
    ]
    service = LlmService(ScriptedBackend(script))
    assistant = ConversableAgent("assistant", llm_config=llm_config(), human_input_mode="NEVER")
    register_llm(assistant, llm=service)
    executor = ConversableAgent(
        "executor",
        llm_config=False,
        human_input_mode="NEVER",
        is_termination_msg=lambda m: "TERMINATE" in str(m.get("content") or ""),
    )
    calls: list[tuple[int, int]] = []

    @executor.register_for_execution()
    @assistant.register_for_llm(description="Add two numbers.")
    def add(a: Annotated[int, "first"], b: Annotated[int, "second"]) -> int:
        calls.append((a, b))
        return a + b

    requests: list[list[Message]] = []
    with llm_run(recorder=lambda messages, _: requests.append(messages)):
        result = executor.initiate_chat(assistant, message="What is 2 + 3?", max_turns=3, silent=True)
    service.close()

    assert calls == [(2, 3)]
    proposal = result.chat_history[1]
    assert proposal["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 2, "b": 3}'}
    assert result.chat_history[2]["content"] == "5"
    assert result.chat_history[-1]["content"] == "The sum is 5. TERMINATE"
    # The second request carried the tool's result back to the model.
    assert requests[1][-1] == {"tool_call_id": "call_0_0", "role": "tool", "content": "5"}


def test_a_group_chat_selects_speakers_with_the_service_it_is_given() -> None:
    script = ["bob", "Hi from bob.", "carol", "Hi from carol."]
    service = LlmService(ScriptedBackend(script))
    try:
        agents = [ConversableAgent(name, llm_config=llm_config(), human_input_mode="NEVER") for name in NAMES]
        for agent in agents:
            register_llm(agent, service)
        group = GroupChat(agents=list[Agent](agents), messages=[], max_round=3, **group_chat_options(service))
        manager = GroupChatManager(groupchat=group, llm_config=llm_config())
        register_llm(manager, service)
        with llm_run():
            result = agents[0].initiate_chat(manager, message="Hello all.", silent=True)
    finally:
        service.close()
    assert [(m["name"], m["content"]) for m in result.chat_history] == [
        ("alice", "Hello all."),
        ("bob", "Hi from bob."),
        ("carol", "Hi from carol."),
    ]
