"""AG2 agents → run events, through AG2's own structured events (its IOStream), not console text.

AG2 sends every agent message, tool call and tool result to the current IOStream (a context
variable), and asks for human input through it. `bridge(session)` makes a run's session that
stream for the code inside the `with`, so runs in other threads never see each other's events.

Tools go through the session too (`SyncSession.call_tool`): inside a bridge, an agent executing a
tool records its result in the run's log, and a resumed run gets the recorded result back
instead of running the tool again; the tool reads its idempotency key with
`flotilla.workflows.current_tool_call()`.

AG2's `run()` / `run_group_chat()` (patterns, handoffs, context variables) run the chat in a
thread of their own and hand its events to a `RunResponse`. Inside a bridge that thread carries
the run's context (its LLM recorder and replay, this bridge), and every event is written to the
run from the chat's thread as it happens, in the same order as a chat run in place; the
response's events still reach the workflow. `response.process()` (no processor) turns each
`InputRequestEvent` into a question to the person and answers it; handoffs, context-variable
changes and AG2's cost report become system messages. A tool's AG2 result (`ReplyResult`, a
handoff target) and the context variables it changed are recorded with its result, so a resumed
run hands off and sees the same context again.
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import autogen.agentchat.conversable_agent as _conversable_agent_module
import autogen.agentchat.group.multi_agent_chat as _multi_agent_chat_module
from autogen import ConversableAgent, GroupChat
from autogen.agentchat.group import ContextVariables, ReplyResult
from autogen.agentchat.group.patterns.pattern import Pattern
from autogen.agentchat.group.targets.transition_target import TransitionTarget
from autogen.events.agent_events import InputRequestEvent
from autogen.events.base_event import BaseEvent
from autogen.io import IOStream
from autogen.io.run_response import RunResponse, RunResponseProtocol
from autogen.io.thread_io_stream import ThreadIOStream

from flotilla.errors import ToolError
from flotilla.llm import group_chat_options, register_llm
from flotilla.llm._ag2 import FlotillaModelClient
from flotilla.workflows import SyncSession


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts
        return "".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _plain(value: Any) -> Any:
    """`value` as JSON would give it back (what the log stores and a resumed run reads)."""
    return json.loads(json.dumps(value, default=str))


_REPLYING_AS = re.compile(r"^Replying as (?P<name>[^.\n]+)\.")

ENCODED = "__ag2__"
"""The key of a tool result that carries AG2 objects (see `_encode`)."""


class SessionIOStream:
    """An AG2 IOStream writing to a Flotilla run: `send` maps AG2 events to run events, `input`
    asks the person."""

    def __init__(self, session: SyncSession) -> None:
        self._session = session
        self._in_tool = 0
        self._lock = threading.RLock()
        self._contexts: list[tuple[ContextVariables, dict[str, Any]]] = []

    @property
    def session(self) -> SyncSession:
        return self._session

    def run_tool(
        self, agent: ConversableAgent, func_call: dict[str, Any], call_id: str | None, verbose: bool
    ) -> tuple[bool, dict[str, Any]]:
        """AG2's `execute_function`, once per run: the result comes from the log on resume."""
        name = str(func_call.get("name", ""))
        context = getattr(agent, "context_variables", None)
        if not isinstance(context, ContextVariables):
            context = None

        def execute() -> Any:
            before = _plain(context.to_dict()) if context is not None else None
            self._in_tool += 1  # AG2 reports the result itself; the session records it instead
            try:
                ok, result = _EXECUTE_FUNCTION(agent, func_call, call_id=call_id, verbose=verbose)
            finally:
                self._in_tool -= 1
            if not ok:
                raise ToolError(str(result.get("content", "")))
            after = _plain(context.to_dict()) if context is not None else None
            return _encode(result.get("content", ""), after if after != before else None)

        sender = getattr(agent, "get_tool_call_originator", lambda: None)() or agent.name
        try:
            recorded = self._session.call_tool(name, execute, call_id=call_id or "", sender=sender)
            content, ok = _decode(recorded, context), True
        except ToolError as exc:
            content, ok = str(exc), False
        self.note_context()
        return ok, {"name": name, "role": "function", "content": content}

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        """Free console text (AG2 prints decorations here); not part of the transcript."""

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        """A question to the person, from the agent AG2 asks for (`Replying as <name>.`)."""
        asking = _REPLYING_AS.match(prompt)
        sender = asking.group("name") if asking else "agent"
        return self._session.text_input(prompt, password=password, sender=sender, recipient="user")

    def send(self, message: BaseEvent) -> None:
        with self._lock:  # one chat at a time writes; its events stay in order
            self.note_context()
            kind = getattr(message, "type", "")
            content = getattr(message, "content", None)
            if content is None:
                return
            if kind == "executed_function":
                _executed_function(self, content)
                return
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self._session, content)

    def relay(self, message: BaseEvent) -> None:
        """An event of a chat AG2 runs in its own thread (`run`, `run_group_chat`), sent from that
        thread: written now, in order. Questions are the response's to ask (`process`), and an
        error reaches the workflow by the response, which raises it."""
        if getattr(message, "type", "") not in _LEFT_TO_THE_RESPONSE:
            self.send(message)

    def track(self, context: ContextVariables) -> None:
        """Show a group chat's context variables (now, and each change from here on)."""
        with self._lock:
            if any(known is context for known, _ in self._contexts):
                return
            snapshot = _plain(context.to_dict())
            self._contexts.append((context, snapshot))
            self._session.system_message({"type": "context_variables", **snapshot}, sender="ag2")

    def note_context(self) -> None:
        """A system message for each tracked context whose variables changed since last seen."""
        with self._lock:
            for i, (context, seen) in enumerate(self._contexts):
                now = _plain(context.to_dict())
                if now == seen:
                    continue
                changed = {key: value for key, value in now.items() if seen.get(key, _MISSING) != value}
                changed.update({key: None for key in seen if key not in now})
                self._contexts[i] = (context, now)
                self._session.system_message({"type": "context_variables_changed", **changed}, sender="ag2")

    def processor(self) -> SessionEventProcessor:
        return SessionEventProcessor(self)


_MISSING = object()
_LEFT_TO_THE_RESPONSE = frozenset({"input_request", "error", "print"})


class SessionEventProcessor:
    """AG2 `EventProcessorProtocol` for a `RunResponse` inside a bridge (what `response.process()`
    uses there): each input request is a question to the person; every other event is in the run
    already (the chat's thread wrote it)."""

    def __init__(self, stream: SessionIOStream) -> None:
        self._stream = stream

    def process(self, response: RunResponseProtocol) -> None:
        for event in response.events:
            self.process_event(event)

    def process_event(self, event: BaseEvent) -> None:
        if not isinstance(event, InputRequestEvent):
            return
        request = event.content  # type: ignore[attr-defined]
        try:
            answer = self._stream.input(str(request.prompt), password=bool(request.password))
        except BaseException:
            request.respond("exit")  # the chat's thread waits for an answer: let it end
            raise
        request.respond(answer)


def _on_text(session: SyncSession, event: Any) -> None:
    session.text_message(_text(event.content), sender=event.sender, recipient=event.recipient)


def _on_tool_call(session: SyncSession, event: Any) -> None:
    if event.content:
        session.text_message(_text(event.content), sender=event.sender, recipient=event.recipient)
    for call in event.tool_calls:
        _suggest(session, event, call.function.name, call.id, call.function.arguments)


def _on_function_call(session: SyncSession, event: Any) -> None:
    _suggest(session, event, event.function_call.name, None, event.function_call.arguments)


def _suggest(session: SyncSession, event: Any, name: str | None, call_id: str | None, arguments: Any) -> None:
    session.suggested_function_call(
        name or "", _arguments(arguments), call_id=call_id or "", sender=event.sender, recipient=event.recipient
    )


def _on_executed_function(session: SyncSession, event: Any) -> None:
    session.function_call_execution(event.func_name, event.content, call_id=event.call_id or "", sender=event.recipient)


def _executed_function(stream: SessionIOStream, event: Any) -> None:
    if not stream._in_tool:  # a tool run outside `run_tool` (AG2 internals): report it as is
        _on_executed_function(stream._session, event)


def _on_termination(session: SyncSession, event: Any) -> None:
    reason = getattr(event, "termination_reason", None) or "the conversation ended"
    session.system_message({"type": "termination", "reason": str(reason)}, sender="ag2")


def _on_error(session: SyncSession, event: Any) -> None:
    session.error(f"AG2 error: {event.error}", sender="ag2")


def _handoff(how: str) -> Any:
    def on_transition(session: SyncSession, event: Any) -> None:
        source = getattr(event.source_agent, "name", str(event.source_agent))
        target = event.transition_target.display_name()
        session.system_message({"type": "handoff", "from": source, "to": target, "by": how}, sender=source)

    return on_transition


def _on_run_completion(session: SyncSession, event: Any) -> None:
    """AG2's cost report of the chat, per model (its calls went through the run's LLM, so the
    run's usage counts them too, at the same prices)."""
    report = event.cost or {}
    usage = report.get("usage_including_cached_inference", {}) if isinstance(report, dict) else {}
    for model, numbers in sorted(usage.items()):
        if model == "total_cost" or not isinstance(numbers, dict):
            continue
        fields = ("prompt_tokens", "completion_tokens", "total_tokens", "cost")
        session.system_message(
            {"type": "ag2_usage", "model": model, **{key: numbers.get(key, 0) for key in fields}}, sender="ag2"
        )


_HANDLERS = {
    "text": _on_text,
    "tool_call": _on_tool_call,
    "function_call": _on_function_call,
    "termination": _on_termination,
    "error": _on_error,
    "on_context_condition_transition": _handoff("context condition"),
    "on_condition_l_l_m_transition": _handoff("LLM condition"),
    "after_works_transition": _handoff("after work"),
    "reply_result_transition": _handoff("tool result"),
    "run_completion": _on_run_completion,
}


def _encode(content: Any, context: dict[str, Any] | None) -> Any:
    """A tool's result as the log keeps it: plain values as they are; AG2 objects (a
    `ReplyResult`, a handoff target) and the context variables the tool left (when it changed
    them) under `ENCODED`, so `_decode` gives them back on resume."""
    reply: dict[str, Any] | None = None
    if isinstance(content, ReplyResult):
        variables = content.context_variables
        reply = {
            "message": content.message,
            "target": _target(content.target),
            "context_variables": _plain(variables.to_dict()) if variables is not None else None,
        }
    elif isinstance(content, TransitionTarget):
        reply = {"target": _target(content)}
    elif context is None:
        return content
    return {ENCODED: reply, "value": None if reply is not None else content, "context": context}


def _target(target: TransitionTarget | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {"class": type(target).__name__, "fields": target.model_dump(mode="json")}


def _decode(value: Any, context: ContextVariables | None) -> Any:
    """The tool's result again (`_encode`), and its context variables set as it left them."""
    if not isinstance(value, dict) or ENCODED not in value:
        return value
    left = value.get("context")
    if context is not None and isinstance(left, dict) and _plain(context.to_dict()) != left:
        context.clear()  # a resumed run: the tool did not run again
        context.update(left)
    reply = value[ENCODED]
    if reply is None:
        return value.get("value")
    target = _rebuild_target(reply.get("target"))
    if "message" not in reply:
        return target
    variables = reply.get("context_variables")
    return ReplyResult(
        message=str(reply["message"]),
        target=target,
        context_variables=ContextVariables(data=variables) if isinstance(variables, dict) else None,
    )


def _rebuild_target(spec: Any) -> TransitionTarget | None:
    if not isinstance(spec, dict):
        return None
    name, fields = spec.get("class"), spec.get("fields") or {}
    for cls in _subclasses(TransitionTarget):
        if cls.__name__ == name:
            try:
                return cls.model_validate(fields)
            except TypeError:  # an __init__ of its own (AgentTarget takes the agent)
                return cls.model_construct(**fields)
    raise ToolError(f"a recorded handoff names an unknown AG2 target {name!r}")


def _subclasses(cls: type[TransitionTarget]) -> list[type[TransitionTarget]]:
    found: list[type[TransitionTarget]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


_ACTIVE: contextvars.ContextVar[SessionIOStream | None] = contextvars.ContextVar("flotilla_ag2_bridge", default=None)
"""The bridge the running code is in (it follows the run into the threads AG2 starts)."""

_EXECUTE_FUNCTION = ConversableAgent.execute_function
_THREAD_SEND = ThreadIOStream.send
_PROCESS = RunResponse.process
_PREPARE = Pattern.prepare_group_chat
_installed = threading.Lock()


def _execute_function(
    self: ConversableAgent, func_call: dict[str, Any], call_id: str | None = None, verbose: bool = False
) -> tuple[bool, dict[str, Any]]:
    stream = _ACTIVE.get()
    if stream is not None:
        return stream.run_tool(self, func_call, call_id, verbose)
    return _EXECUTE_FUNCTION(self, func_call, call_id=call_id, verbose=verbose)


def _thread_send(self: ThreadIOStream, message: Any) -> None:
    stream = _ACTIVE.get()
    if stream is not None:
        stream.relay(message)
    _THREAD_SEND(self, message)


def _process(self: RunResponse, processor: Any = None) -> None:
    stream = _ACTIVE.get()
    if processor is None and stream is not None:
        processor = stream.processor()
    _PROCESS(self, processor)


def _prepare_group_chat(self: Pattern, *args: Any, **kwargs: Any) -> Any:
    """The pattern's group chat, with its manager (and automatic speaker selection) on the run's
    LLM when its llm_config is Flotilla's, and its context variables shown in the run."""
    prepared = _PREPARE(self, *args, **kwargs)
    stream = _ACTIVE.get()
    if stream is not None:
        context, groupchat, manager = prepared[3], prepared[7], prepared[8]
        if _served_by_flotilla(getattr(manager, "llm_config", None)):
            register_llm(manager, stream.session.llm)
            options = group_chat_options(stream.session.llm)
            # The manager runs the chat on copies of the group chat (AG2 copies a reply
            # function's config when registering it): equip each.
            copies = [entry.get("config") for entry in getattr(manager, "_reply_func_list", [])]
            for chat in [groupchat, *copies]:
                if isinstance(chat, GroupChat) and chat.select_speaker_auto_model_client_cls is None:
                    chat.select_speaker_auto_model_client_cls = options["select_speaker_auto_model_client_cls"]
                    if chat.select_speaker_auto_llm_config is None:
                        chat.select_speaker_auto_llm_config = options["select_speaker_auto_llm_config"]
        if isinstance(context, ContextVariables):
            stream.track(context)
    return prepared


def _served_by_flotilla(llm_config: Any) -> bool:
    entries = (
        llm_config.get("config_list") if isinstance(llm_config, dict) else getattr(llm_config, "config_list", None)
    )
    return any(
        (entry.get("model_client_cls") if isinstance(entry, dict) else getattr(entry, "model_client_cls", None))
        == FlotillaModelClient.__name__
        for entry in entries or []
    )


class _ContextThread(threading.Thread):
    """A thread that runs in a copy of its creator's context (as asyncio tasks do): AG2's chat
    threads keep the run's LLM hooks and bridge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flotilla_context = contextvars.copy_context()

    def run(self) -> None:
        self._flotilla_context.run(super().run)


class _Threading:
    """`threading` for the AG2 modules that start chat threads, with `_ContextThread`."""

    Thread = _ContextThread

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


def _install() -> None:
    """Route every agent's tool execution, and AG2's chat threads, through the run's session
    while a bridge is active (AG2 has no hook for either); outside a bridge, agents behave as AG2
    made them."""
    with _installed:
        if ConversableAgent.execute_function is not _execute_function:
            ConversableAgent.execute_function = _execute_function  # type: ignore[method-assign]
            ThreadIOStream.send = _thread_send  # type: ignore[method-assign]
            RunResponse.process = _process  # type: ignore[method-assign]
            Pattern.prepare_group_chat = _prepare_group_chat  # type: ignore[method-assign]
            for module in (_conversable_agent_module, _multi_agent_chat_module):
                module.__dict__["threading"] = _Threading()  # what the module calls `threading`


@contextmanager
def bridge(session: SyncSession) -> Iterator[SessionIOStream]:
    """Inside the `with`, AG2 agents in this thread (and context, and the chat threads AG2
    starts from it) talk to `session`."""
    _install()
    stream = SessionIOStream(session)
    token = _ACTIVE.set(stream)
    try:
        with IOStream.set_default(stream):
            yield stream
    finally:
        _ACTIVE.reset(token)
