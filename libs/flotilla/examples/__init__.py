"""The workflows a deployment serves by default: `learning_chat` (the seed's example),
`tool_approval`, `group_chat` and `support_desk` (AG2 agents on the configured LLM; the last on
AG2's current group-chat API: a pattern, handoffs, context variables, a person in the chat). The
benchmarks' `load` and `load_sync` are in flotilla.examples.benchmarks, served only where asked
for."""

from __future__ import annotations

from typing import Any

from autogen import Agent, ConversableAgent, GroupChat, GroupChatManager, register_function
from autogen.agentchat import run_group_chat
from pydantic import BaseModel, Field

from flotilla.examples._support_desk import support_desk_pattern
from flotilla.llm import llm_config, register_llm
from flotilla.workflows import PERSON, SyncSession, Thread, WorkflowRegistry

registry = WorkflowRegistry()


class LearningParams(BaseModel):
    turns: int = Field(default=3, ge=1, le=10, description="Student-teacher exchanges")


HISTORY_MESSAGES = 12
"""The latest messages of a thread a reply's agents are given (the bundled model's context is small)."""
HISTORY_CHARS = 600


def _seed(student: ConversableAgent, teacher: ConversableAgent, thread: Thread) -> None:
    """Give both agents the thread's conversation so far, as if they had had it (AG2 keeps each
    agent's view of a chat in `_oai_messages`; `initiate_chat(clear_history=False)` continues it)."""
    for message in thread.history[-HISTORY_MESSAGES:]:
        body = message.body[:HISTORY_CHARS]
        if message.sender == PERSON:
            body = f"(The person said:) {body}"
        for agent, other in ((student, teacher), (teacher, student)):
            role = "assistant" if message.sender == agent.name else "user"
            agent._oai_messages[other].append({"content": body, "role": role, "name": message.sender})


def _topic(thread: Thread) -> str:
    """What a thread is about: the person's first answer in it."""
    return next((m.body for m in thread.history if m.sender == PERSON), "")


@registry.register(
    name="learning_chat",
    description="A student and a teacher agent talk about a topic you choose (the seed's example); reply to go on.",
    params=LearningParams,
    double_texting="queue",
)
def learning_chat(ui: SyncSession, params: dict[str, Any]) -> str:
    thread = ui.thread
    if thread.is_reply:
        topic = _topic(thread)
    else:
        topic = ui.text_input(
            prompt="What do you want to learn about?", suggestions=["Math", "Physics", "History"], sender="workflow"
        ).strip()
    student = ConversableAgent(
        "student",
        system_message="You are a curious student. Ask the teacher short questions about the topic.",
        llm_config=llm_config(),
        human_input_mode="NEVER",
    )
    teacher = ConversableAgent(
        "teacher",
        system_message="You are a patient teacher. Answer the student's questions briefly and clearly.",
        llm_config=llm_config(),
        human_input_mode="NEVER",
    )
    register_llm(student, ui.llm)
    register_llm(teacher, ui.llm)
    if thread.is_reply:
        # A reply continues the conversation: both agents remember it, and the student passes
        # on what the person asks now.
        _seed(student, teacher, thread)
        opening = f"About {topic or 'what we discussed'}, the person asks: {thread.message}"
    else:
        opening = f"Teach me about {topic or 'something new'}."
    chat = student.initiate_chat(
        teacher, message=opening, max_turns=params["turns"], summary_method="last_msg", clear_history=False
    )
    return str(chat.summary)


class WeatherParams(BaseModel):
    city: str = Field(default="Paris", min_length=1, max_length=80)


@registry.register(
    name="tool_approval",
    description="An assistant proposes a function call; you approve or reject it before it runs.",
    params=WeatherParams,
)
def tool_approval(ui: SyncSession, params: dict[str, Any]) -> str:
    assistant = ConversableAgent(
        "assistant",
        system_message="You answer weather questions. Call get_weather to learn the weather of a city.",
        llm_config=llm_config(),
        human_input_mode="NEVER",
    )
    executor = ConversableAgent("executor", llm_config=False, human_input_mode="NEVER", code_execution_config=False)

    def get_weather(city: str) -> str:
        choice = ui.multiple_choice(
            prompt=f"The assistant wants to call get_weather(city={city!r}). Allow it?",
            choices=["approve", "reject"],
            default="reject",
            sender="executor",
        )
        if choice != "approve":
            return "The person rejected this call."
        return f"It is sunny and 21 degrees in {city}."

    register_function(get_weather, caller=assistant, executor=executor, description="The weather of a city")
    register_llm(assistant, ui.llm)
    chat = executor.initiate_chat(
        assistant, message=f"What is the weather in {params['city']}?", max_turns=2, summary_method="last_msg"
    )
    return str(chat.summary)


class PanelParams(BaseModel):
    question: str = Field(default="How should a team of three plan a small software project?", max_length=500)
    rounds: int = Field(default=4, ge=2, le=12)


@registry.register(
    name="group_chat",
    description="Three agents (planner, critic, writer) discuss a question in turn and answer it.",
    params=PanelParams,
)
def group_chat(ui: SyncSession, params: dict[str, Any]) -> str:
    roles = {
        "planner": "You break the question into a short plan of steps.",
        "critic": "You point out one weakness in the plan so far, in one or two sentences.",
        "writer": "You write the final short answer, taking the plan and the criticism into account.",
    }
    agents: list[Agent] = []
    for name, role in roles.items():
        agent = ConversableAgent(name, system_message=role, llm_config=llm_config(), human_input_mode="NEVER")
        register_llm(agent, ui.llm)
        agents.append(agent)
    chat = GroupChat(agents=agents, messages=[], max_round=params["rounds"], speaker_selection_method="round_robin")
    manager = GroupChatManager(groupchat=chat, llm_config=llm_config())
    register_llm(manager, ui.llm)
    first = agents[0]
    if not isinstance(first, ConversableAgent):
        raise TypeError(f"the chat's first agent is a {type(first).__name__}, not a ConversableAgent")
    result = first.initiate_chat(manager, message=params["question"], summary_method="last_msg")
    return str(result.summary)


class SupportParams(BaseModel):
    request: str = Field(default="The app crashes when I export a report.", min_length=1, max_length=500)
    max_rounds: int = Field(default=12, ge=4, le=40, description="Turns of the group chat at most")


@registry.register(
    name="support_desk",
    description="A support desk (triage, tech, billing) on AG2's group-chat pattern API: handoffs, "
    "context variables, and you as the customer.",
    params=SupportParams,
)
def support_desk(ui: SyncSession, params: dict[str, Any]) -> dict[str, Any]:
    response = run_group_chat(
        pattern=support_desk_pattern(ui), messages=params["request"], max_rounds=params["max_rounds"]
    )
    response.process()  # in a Flotilla run: the customer's turns are questions to you
    context = response.context_variables
    return {
        "summary": response.summary,
        "context": context.to_dict() if context is not None else {},
        "last_speaker": response.last_speaker,
    }
