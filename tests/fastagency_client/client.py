"""Drives a Flotilla gateway with FastAgency's own, unmodified client (`FastAPIProvider`).

Runs in an isolated venv with the pinned `requirements.txt` beside this file (fastagency pins
ag2==0.10.2, which the repo's own resolve cannot hold); tests/test_fastagency.py builds that venv
and runs this script against a live stack:

    python client.py BASE_URL OUT.json [--run WORKFLOW --answers JSON [--mesop]]

BASE_URL is what a FastAgency user gives `FastAPIProvider`, e.g. http://127.0.0.1:8000/fa/<token>.
Writes {"workflows": [...], "messages": [...], "end": ...} to OUT.json: the discovery answer, and
each message of the run as the provider handed it to the UI, with the answers the UI gave.

With --mesop the run goes through FastAgency's Mesop UI instead: `run_workflow_mesop`, the
conversation's message stream and `respond`, as its page's handlers call them when a person picks
a workflow and answers (everything but the browser).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional
from uuid import uuid4

import websockets
from fastagency.adapters.fastapi import FastAPIProvider
from fastagency.base import CreateWorkflowUIMixin, Runnable
from fastagency.messages import AskingMessage, IOMessage, MessageProcessorMixin, MultipleChoice


class ScriptedUI(MessageProcessorMixin, CreateWorkflowUIMixin):
    """A FastAgency UI (what ConsoleUI or MesopUI are) that records every message and answers each
    question from a script: `answers` maps the question type to the text to type."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.messages: list[dict[str, Any]] = []

    def visit_default(self, message: IOMessage) -> Optional[str]:
        record = {"class": type(message).__name__, **message.model_dump()}
        self.messages.append(record)
        if not isinstance(message, AskingMessage):
            return None
        answer = self.answers[message.type]
        if isinstance(message, MultipleChoice) and message.single and answer not in message.choices:
            raise ValueError(f"{answer!r} is not one of {message.choices}")
        record["answer"] = answer
        return answer

    def create_subconversation(self) -> "ScriptedUI":
        return self

    @contextmanager
    def create(self, app: Runnable, import_string: str) -> Iterator[None]:
        yield

    def start(self, **kwargs: Any) -> None:
        raise NotImplementedError("driven by main()")


def run_in_mesop(provider: FastAPIProvider, name: str, answers: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """What the Mesop page does: start the workflow, render each stream of messages up to a
    question (or a keep-alive, after which the page asks for more), answer, until it completes."""
    from fastagency.messages import KeepAlive, WorkflowCompleted
    from fastagency.ui.mesop.mesop import MesopUI, run_workflow_mesop

    ui = run_workflow_mesop(provider, name=name)
    conversation = ui.ui_base
    assert isinstance(conversation, MesopUI)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for mesop_message in conversation.get_message_stream():
            message = mesop_message.io_message
            if isinstance(message, KeepAlive):
                continue
            messages.append({"class": type(message).__name__, **message.model_dump()})
            if isinstance(message, WorkflowCompleted):
                return ui.workflow_uuid, messages
            if isinstance(message, AskingMessage):
                messages[-1]["answer"] = answers[message.type]
                conversation.respond(answers[message.type])
    raise TimeoutError(f"no workflow_completed within 60 s; messages: {messages}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--run", help="a workflow to run end to end")
    parser.add_argument("--answers", default="{}", help='JSON: {"text_input": "...", "multiple_choice": "..."}')
    parser.add_argument("--mesop", action="store_true", help="run it through FastAgency's Mesop UI")
    args = parser.parse_args()

    provider = FastAPIProvider(fastapi_url=args.base_url)
    result: dict[str, Any] = {
        "workflows": [{"name": name, "description": provider.get_description(name)} for name in provider.names]
    }
    if args.run and not args.mesop:
        ui_base = ScriptedUI(json.loads(args.answers))
        workflow_uuid = uuid4().hex
        result["workflow_uuid"] = workflow_uuid
        try:
            provider.run(name=args.run, ui=ui_base.create_workflow_ui(workflow_uuid))
            result["end"] = "returned"
        except websockets.exceptions.ConnectionClosedOK as closed:
            # How FastAgency's own FastAPIAdapter ends a run too: its handler returns, the server
            # closes with 1000, and the provider's receive loop raises this.
            result["end"] = f"closed {closed.rcvd.code if closed.rcvd else None}"
        result["messages"] = ui_base.messages
    if args.mesop:
        result["workflow_uuid"], result["messages"] = run_in_mesop(provider, args.run, json.loads(args.answers))
        result["end"] = "workflow_completed"
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
