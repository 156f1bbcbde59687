"""Workflows only the tests serve: the examples plus ones that misbehave on purpose."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import autogen
from autogen import ConversableAgent
from autogen.testing import TestAgent, ToolCall
from pydantic import BaseModel, Field

from flotilla.examples import learning_chat
from flotilla.examples._support_desk import support_desk_pattern
from flotilla.examples import registry as examples
from flotilla.examples.benchmarks import registry as benchmarks
from flotilla.llm import llm_config, register_llm
from flotilla.workflows import DoubleTexting, Session, SyncSession, WorkflowRegistry, current_tool_call

registry = WorkflowRegistry()
registry.include(examples)
registry.include(benchmarks)


@registry.register(name="crash_worker", description="Kills the worker process running it.")
async def crash_worker(session: Session, params: dict[str, Any]) -> None:
    await session.text_message("about to crash")
    await session.flush()
    os._exit(17)


@registry.register(name="raises", description="Raises an exception.")
async def raises(session: Session, params: dict[str, Any]) -> None:
    await session.text_message("about to raise")
    raise RuntimeError("boom")


@registry.register(name="choose", description="Asks a multiple-choice question.")
async def choose(session: Session, params: dict[str, Any]) -> str:
    return await session.multiple_choice("Approve?", ["yes", "no"], default="no")


class GreetingParams(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    times: int = Field(default=1, ge=1, le=5)


@registry.register(name="typed_params", description="Declares its params.", params=GreetingParams)
async def typed_params(session: Session, params: dict[str, Any]) -> str:
    return " ".join([f"hello {params['name']}"] * params["times"])


@registry.register(name="every_kind", description="A plain def workflow that uses every session call.")
def every_kind(ui: SyncSession, params: dict[str, Any]) -> dict[str, Any]:
    ui.text_message(body="hello", sender="alice", recipient="bob")
    ui.system_message({"note": "system notice"})
    ui.error(short="a visible error", long="with details")
    ui.suggested_function_call("add", {"a": 1, "b": 2}, call_id="c1", sender="alice", recipient="bob")
    ui.function_call_execution("add", 3, call_id="c1", sender="bob")
    secret = ui.text_input(prompt="password?", password=True, suggestions=["hunter2"])
    picked = ui.multiple_choice(prompt="pick some", choices=["a", "b", "c"], default="b", single=False)
    return {"secret_length": len(secret), "picked": picked}


@registry.register(name="timeouts", description="Questions that time out.")
async def timeouts(session: Session, params: dict[str, Any]) -> str:
    first = await session.text_input("answer quickly", timeout_s=params.get("timeout_s", 0.5), default="the default")
    if params.get("fail"):
        await session.multiple_choice("no default", ["x", "y"], timeout_s=params.get("timeout_s", 0.5))
    return first


def _scripted(agent: ConversableAgent, replies: list[Any]) -> TestAgent:
    return TestAgent(agent, replies, suppress_messages_end=True)


@registry.register(name="ag2_chat", description="Two scripted AG2 agents talk.")
def ag2_chat(ui: SyncSession, params: dict[str, Any]) -> str:
    student = ConversableAgent("student", llm_config=False, human_input_mode="NEVER")
    teacher = ConversableAgent("teacher", llm_config=False, human_input_mode="NEVER")
    with _scripted(student, ["What is 2+2?", "Thanks!"]), _scripted(teacher, ["It is 4.", "You are welcome."]):
        result = student.initiate_chat(teacher, message="Hi teacher", max_turns=2, summary_method="last_msg")
    return str(result.summary)


@registry.register(name="ag2_run_human", description="ag2_human on AG2's run(): a RunResponse, processed.")
def ag2_run_human(ui: SyncSession, params: dict[str, Any]) -> str:
    assistant = ConversableAgent("assistant", llm_config=False, human_input_mode="NEVER")
    person = ConversableAgent("person", llm_config=False, human_input_mode="ALWAYS", code_execution_config=False)
    with _scripted(assistant, ["What should I do?", "Done."]):
        response = person.run(assistant, message="Help me", max_turns=2, summary_method="last_msg")
        response.process()
    return str(response.summary)


@registry.register(name="ag2_human", description="An AG2 agent that asks the person every turn.")
def ag2_human(ui: SyncSession, params: dict[str, Any]) -> str:
    assistant = ConversableAgent("assistant", llm_config=False, human_input_mode="NEVER")
    person = ConversableAgent("person", llm_config=False, human_input_mode="ALWAYS", code_execution_config=False)
    with _scripted(assistant, ["What should I do?", "Done."]):
        result = person.initiate_chat(assistant, message="Help me", max_turns=2, summary_method="last_msg")
    return str(result.summary)


@registry.register(name="ag2_tool_approval", description="An AG2 agent proposes a tool call; the person approves it.")
def ag2_tool_approval(ui: SyncSession, params: dict[str, Any]) -> str:
    # Tools need an llm_config to register; TestAgent replaces the client, so nothing is called.
    unused = {"config_list": [{"model": "scripted", "api_key": "unused", "base_url": "http://127.0.0.1:9/v1"}]}
    assistant = ConversableAgent("assistant", llm_config=unused, human_input_mode="NEVER")
    executor = ConversableAgent("executor", llm_config=False, human_input_mode="NEVER")

    def get_weather(city: str) -> str:
        choice = ui.multiple_choice(
            prompt=f"Allow get_weather(city={city!r})?",
            choices=["approve", "reject"],
            default="reject",
            sender="executor",
        )
        return f"sunny in {city}" if choice == "approve" else "the person rejected the call"

    autogen.register_function(get_weather, caller=assistant, executor=executor, description="Weather of a city")
    with _scripted(assistant, [ToolCall("get_weather", city="Paris").to_message(), "All done."]):
        result = executor.initiate_chat(assistant, message="Weather in Paris?", max_turns=2, summary_method="last_msg")
    return str(result.summary)


@registry.register(name="slow_messages", description="Emits n messages, one every delay_s.")
async def slow_messages(session: Session, params: dict[str, Any]) -> int:
    for i in range(params.get("n", 50)):
        await session.text_message(f"message {i}")
        await asyncio.sleep(params.get("delay_s", 0.02))
    return int(params.get("n", 50))


@registry.register(name="resumable", description="Asks the LLM and the person, then kills its first worker once.")
def resumable(ui: SyncSession, params: dict[str, Any]) -> dict[str, str]:
    first = ui.llm.complete_sync([{"role": "user", "content": "first"}]).text
    ui.text_message(body=first, sender="assistant")
    topic = ui.text_input(prompt="Topic?")
    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("the first attempt died here")
        ui.flush()
        os._exit(17)
    second = ui.llm.complete_sync([{"role": "user", "content": topic}]).text
    ui.text_message(body=second, sender="assistant")
    return {"topic": topic, "first": first, "second": second}


@registry.register(
    name="paced_chat",
    description="Two agents take turns, one message every delay_s; the person is asked once, at message ask_at.",
)
async def paced_chat(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    n, delay_s, ask_at = int(params.get("n", 6)), float(params.get("delay_s", 0.5)), int(params.get("ask_at", 3))
    answer = None
    for i in range(n):
        if i == ask_at:
            answer = await session.text_input("Keep going?", suggestions=["yes", "faster"], sender="alice")
        sender, recipient = ("alice", "bob") if i % 2 == 0 else ("bob", "alice")
        await session.text_message(f"paced message {i + 1} of {n}", sender=sender, recipient=recipient)
        await asyncio.sleep(delay_s)
    return {"messages": n, "answer": answer}


class InjectionParams(BaseModel):
    url: str = Field(min_length=1, max_length=500)


@registry.register(
    name="markdown_injection",
    description="An agent's reply carrying a prompt injection's images and HTML (tests).",
    params=InjectionParams,
)
async def markdown_injection(session: Session, params: dict[str, Any]) -> str:
    url = params["url"]
    body = (
        f"Summary done. ![]({url}?q=the-conversation) ![logo](https://evil.example/x.png)\n\n"
        f'<img src="{url}?q=raw-html"> Code stays: `<img src=x>`'
    )
    await session.text_message(body, sender="assistant", recipient="user")
    return "ok"


def _crash_once(marker: str, why: str) -> None:
    """Kill this worker the first time (the marker file says it happened): the run is resumed
    by another attempt. Callers flush first, so what they emitted is in the log."""
    path = Path(marker)
    if not path.exists():
        path.write_text(why)
        os._exit(17)


@registry.register(name="huge_question", description="Asks a question too large for the server to store.")
async def huge_question(session: Session, params: dict[str, Any]) -> str:
    return await session.text_input("x" * int(params.get("bytes", 9_000_000)))


@registry.register(
    name="side_effect_tool",
    description="An AG2 agent calls a tool with a side effect (a ledger line); the worker dies after it once.",
)
def side_effect_tool(ui: SyncSession, params: dict[str, Any]) -> dict[str, Any]:
    ledger = Path(params["ledger"])
    assistant = ConversableAgent("assistant", llm_config=llm_config(), human_input_mode="NEVER")
    executor = ConversableAgent("executor", llm_config=False, human_input_mode="NEVER", code_execution_config=False)

    def book_table(city: str) -> str:
        call = current_tool_call()
        with ledger.open("a") as out:  # the side effect, with the key the outside world would dedupe on
            out.write(f"{call.idempotency_key if call else 'no key'} {city}\n")
        return f"booked in {city}"

    autogen.register_function(book_table, caller=assistant, executor=executor, description="Book a table")
    register_llm(assistant, ui.llm)
    chat = executor.initiate_chat(assistant, message="Book me a table in Oslo.", max_turns=2, summary_method="last_msg")
    ui.flush()
    _crash_once(params["marker"], "died after the tool ran")
    return {"summary": str(chat.summary), "ledger": ledger.read_text().splitlines()}


@registry.register(name="async_side_effect", description="session.call_tool in an async workflow, then dies once.")
async def async_side_effect(session: Session, params: dict[str, Any]) -> list[str]:
    ledger = Path(params["ledger"])

    def charge() -> str:
        call = current_tool_call()
        with ledger.open("a") as out:
            out.write(f"{call.idempotency_key if call else 'no key'}\n")
        return "charged"

    result = await session.call_tool("charge", charge)
    await session.text_message(f"tool said {result}")
    await session.flush()
    _crash_once(params["marker"], "died after the tool ran")
    return ledger.read_text().splitlines()


@registry.register(name="diverges", description="Says something else on its second attempt (changed code).")
async def diverges(session: Session, params: dict[str, Any]) -> str:
    # The first attempt takes path A and leaves a mark; every later one (after the crash below, or
    # a takeover of a stalled worker) takes path B: the paths part at step 1 whatever the timing.
    took_a = Path(f"{params['marker']}.path-a")
    path = "B" if took_a.exists() else "A"
    took_a.touch()
    await session.text_message(f"took path {path}")
    answer = await session.text_input("go on?")
    await session.flush()
    _crash_once(params["marker"], "died before the code changed")
    await session.text_message(f"went on with {answer}")
    return path


class LongChatParams(BaseModel):
    turns: int = Field(default=50, ge=1, le=200)


@registry.register(
    name="long_chat", description="learning_chat with up to 200 turns (bench:loggrowth).", params=LongChatParams
)
def long_chat(ui: SyncSession, params: dict[str, Any]) -> str:
    return str(learning_chat(ui, params))


@registry.register(
    name="support_desk_resumable",
    description="The support desk example; its first worker dies right after the customer answers.",
)
def support_desk_resumable(ui: SyncSession, params: dict[str, Any]) -> dict[str, Any]:
    pattern = support_desk_pattern(ui)
    assert pattern.user_agent is not None

    def crash_after_the_answer(answer: str) -> str:
        ui.flush()
        _crash_once(params["marker"], "died after the customer answered")
        return answer

    pattern.user_agent.register_hook("safeguard_human_inputs", crash_after_the_answer)
    response = autogen.agentchat.run_group_chat(pattern=pattern, messages=params["request"], max_rounds=12)
    response.process()
    context = response.context_variables
    return {"summary": response.summary, "context": context.to_dict() if context is not None else {}}


@registry.register(
    name="ag2_auto_pattern", description="AG2's AutoPattern: the group manager picks each speaker on the run's LLM."
)
def ag2_auto_pattern(ui: SyncSession, params: dict[str, Any]) -> list[str]:
    from autogen.agentchat.group.patterns import AutoPattern

    planner = ConversableAgent("planner", description="Makes a plan.", llm_config=llm_config())
    writer = ConversableAgent("writer", description="Writes the answer.", llm_config=llm_config())
    for agent in (planner, writer):
        register_llm(agent, ui.llm)
    pattern = AutoPattern(
        initial_agent=planner, agents=[planner, writer], group_manager_args={"llm_config": llm_config()}
    )
    response = autogen.agentchat.run_group_chat(pattern=pattern, messages="Plan a picnic.", max_rounds=3)
    response.process()
    return [str(message.get("name", "")) for message in response.messages]


async def thread_probe(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """Shows what a run knows of its thread; a first run asked to (`ask`) waits for an answer,
    so that a reply can arrive while it works."""
    thread = session.thread
    await session.text_message(f"you said: {thread.message}" if thread.is_reply else "first", sender="probe")
    if params.get("ask") and not thread.is_reply:
        await session.text_input("hold on?", sender="probe")
    return {
        "thread_id": thread.thread_id,
        "reply_to": thread.reply_to,
        "message": thread.message,
        "history": [[m.sender, m.body] for m in thread.history],
    }


_policy: DoubleTexting
for _policy in ("reject", "queue", "interrupt"):
    registry.register(
        name=f"thread_{_policy}",
        description=f"Shows its thread; replies while it works: {_policy}.",
        double_texting=_policy,
    )(thread_probe)


@registry.register(name="ask_briefly", description="Asks once with a short timeout and no default (fails unanswered).")
async def ask_briefly(session: Session, params: dict[str, Any]) -> str:
    await session.text_message("a quick question follows", sender="probe")
    return await session.text_input("quick?", sender="probe", timeout_s=float(params.get("timeout_s", 2.0)))
