"""Drives a Flotilla gateway with FastAgency's own, unmodified client (`FastAPIProvider`).

Runs in an isolated venv with the pinned `requirements.txt` beside this file (fastagency pins
ag2==0.10.2, which the repo's own resolve cannot hold); tests/test_fastagency.py builds that venv
and runs this script against a live stack:

    python client.py BASE_URL OUT.json [--run WORKFLOW --answers JSON]

BASE_URL is what a FastAgency user gives `FastAPIProvider`, e.g. http://127.0.0.1:8000/fa/<token>.
Writes {"workflows": [...], "messages": [...], "end": ...} to OUT.json: the discovery answer, and
each message of the run as the provider handed it to the UI, with the answers the UI gave.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--run", help="a workflow to run end to end")
    parser.add_argument("--answers", default="{}", help='JSON: {"text_input": "...", "multiple_choice": "..."}')
    args = parser.parse_args()

    provider = FastAPIProvider(fastapi_url=args.base_url)
    result: dict[str, Any] = {
        "workflows": [{"name": name, "description": provider.get_description(name)} for name in provider.names]
    }
    if args.run:
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
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
