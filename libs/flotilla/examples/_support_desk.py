"""The `support_desk` example's agents, on AG2's group-chat pattern API.

No `from __future__ import annotations` here: AG2 0.14 finds a tool's `context_variables`
parameter by its annotation object and fails on a string annotation
(`TypeAdapter[ForwardRef('ContextVariables')] is not fully defined`).
"""

from autogen import ConversableAgent
from autogen.agentchat.group import (
    AgentTarget,
    ContextExpression,
    ContextVariables,
    ExpressionContextCondition,
    OnContextCondition,
    ReplyResult,
    RevertToUserTarget,
    TerminateTarget,
)
from autogen.agentchat.group.patterns import DefaultPattern

from flotilla.llm import llm_config, register_llm
from flotilla.workflows import SyncSession


def classify_request(topic: str, context_variables: ContextVariables) -> ReplyResult:
    """Record the request's topic: 'technical' or 'billing'."""
    context_variables["topic"] = "billing" if "bill" in topic.lower() else "technical"
    return ReplyResult(message=f"Topic recorded: {context_variables['topic']}.", context_variables=context_variables)


def mark_resolved(note: str, context_variables: ContextVariables) -> ReplyResult:
    """Mark the request resolved once the customer confirms it, and end the chat."""
    context_variables["resolved"] = True
    return ReplyResult(message=f"Resolved: {note}", context_variables=context_variables, target=TerminateTarget())


def support_desk_pattern(ui: SyncSession) -> DefaultPattern:
    """The support desk's agents and handoffs: `triage` records the topic (a context variable),
    a context condition hands the customer to `tech` or `billing`, who answer and hand back to
    the customer (a person, asked through the run) until one of them marks the request resolved."""

    triage = ConversableAgent(
        "triage",
        system_message="You triage support requests. Call classify_request with the request's topic.",
        llm_config=llm_config(),
        functions=[classify_request],
    )
    tech = ConversableAgent(
        "tech",
        system_message="You solve technical problems in one short step at a time. When the customer "
        "confirms the problem is solved, call mark_resolved.",
        llm_config=llm_config(),
        functions=[mark_resolved],
    )
    billing = ConversableAgent(
        "billing",
        system_message="You answer billing questions briefly. When the customer is satisfied, call mark_resolved.",
        llm_config=llm_config(),
        functions=[mark_resolved],
    )
    customer = ConversableAgent("customer", human_input_mode="ALWAYS", llm_config=False)
    for agent in (triage, tech, billing):
        register_llm(agent, ui.llm)
    triage.handoffs.add_context_conditions(
        [
            OnContextCondition(
                target=AgentTarget(team),
                condition=ExpressionContextCondition(ContextExpression(f"${{topic}} == '{topic}'")),
            )
            for topic, team in (("technical", tech), ("billing", billing))
        ]
    )
    triage.handoffs.set_after_work(AgentTarget(tech))  # no topic recorded: tech takes it
    tech.handoffs.set_after_work(RevertToUserTarget())
    billing.handoffs.set_after_work(RevertToUserTarget())
    return DefaultPattern(
        initial_agent=triage,
        agents=[triage, tech, billing],
        user_agent=customer,
        context_variables=ContextVariables(data={"topic": "unknown", "resolved": False}),
        group_after_work=TerminateTarget(),
    )
