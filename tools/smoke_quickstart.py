"""The README's quick start, as a newcomer follows it: `./pants run services/ui`, then a
`learning_chat` run over the REST API on the bundled offline model, answered and completed.

    python3 tools/smoke_quickstart.py [--timeout 900]

Runs from the repository root on free ports with its own data directory and API key, prints what
it saw (times included), stops the stack with Ctrl-C's signal, and exits non-zero if anything
failed. CI runs it after the tests (.ci/run). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 (the local stack's loopback URL)
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")
        except OSError as error:
            return 0, str(error)


def wait_for(what: str, check: Any, deadline: float, launcher: subprocess.Popen[str]) -> Any:
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise SystemExit(f"FAILED: `./pants run services/ui` exited ({launcher.returncode}) before {what}")
        result = check()
        if result:
            return result
        time.sleep(1)
    raise SystemExit(f"FAILED: timed out waiting for {what}")


def serving(api: Api) -> Any:
    """/readyz's answer once live workers serve workflows (the strict check), else None."""
    status, body = api.call("GET", "/readyz?min_workflows=1")
    return body if status == 200 else None


def drive_learning_chat(api: Api, deadline: float, launcher: subprocess.Popen[str]) -> list[dict[str, Any]]:
    status, run = api.call("POST", "/v1/runs", {"workflow": "learning_chat", "params": {"turns": 1}})
    if status != 201:
        raise SystemExit(f"FAILED: POST /v1/runs answered {status}: {run}")
    run_id, answered = run["run_id"], False
    events: list[dict[str, Any]] = []

    def progress() -> bool:
        nonlocal answered
        after = events[-1]["seq"] if events else 0
        status, page = api.call("GET", f"/v1/runs/{run_id}/events?after={after}")
        if status != 200:
            raise SystemExit(f"FAILED: GET events answered {status}: {page}")
        for event in page["events"]:
            events.append(event)
            print(f"  {event['seq']:>3} {event['type']:<22} {str(event.get('body') or event.get('prompt') or '')[:70]}")
            if event["type"] == "text_input" and not answered:
                answer = {"request_id": event["request_id"], "value": "Physics"}
                status, reply = api.call("POST", f"/v1/runs/{run_id}/input", answer)
                if status != 202:
                    raise SystemExit(f"FAILED: answering answered {status}: {reply}")
                answered = True
        return bool(events) and events[-1]["type"] == "workflow_completed"

    wait_for("learning_chat to complete", progress, deadline, launcher)
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole check")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    key = f"flk_smoke_{secrets.token_hex(12)}"
    ports = {name: free_port() for name in ("NATS", "DISPATCHER_GRPC", "GATEWAY", "GATEWAY_GRPC", "UI")}
    with tempfile.TemporaryDirectory(prefix="flotilla-smoke-") as data:
        env = {**os.environ, "FLOTILLA_DATA_DIR": data, "FLOTILLA_DEV_API_KEY": key}
        env.update({f"FLOTILLA_{name}_PORT": str(port) for name, port in ports.items()})
        started = time.monotonic()
        launcher = subprocess.Popen(
            ["./pants", "run", "services/ui"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(launcher.stdout or []), daemon=True)
        reader.start()
        try:
            api = Api(f"http://127.0.0.1:{ports['GATEWAY']}", key)
            ready = wait_for("workers to serve workflows", lambda: serving(api), deadline, launcher)
            print(f"ready after {time.monotonic() - started:.0f} s: {ready}")
            ui = urllib.request.urlopen(f"http://127.0.0.1:{ports['UI']}/", timeout=10)  # noqa: S310 (loopback)
            print(f"UI answers {ui.status}")
            chat_started = time.monotonic()
            events = drive_learning_chat(api, deadline, launcher)
            final = events[-1]
            print(f"learning_chat {final['status']} in {time.monotonic() - chat_started:.1f} s, {len(events)} events")
            if final["status"] != "completed" or not any(e["type"] == "text_message" for e in events):
                raise SystemExit(f"FAILED: the run ended {final['status']}: {final.get('error')}")
        except BaseException:
            print("".join(output[-80:]), file=sys.stderr)
            raise
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGINT)
                try:
                    launcher.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(launcher.pid, signal.SIGKILL)
    print("quick start: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
