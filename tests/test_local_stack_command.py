"""The README's run command: `pants run services/ui` runs `flotilla.devstack.main`, which starts the
whole stack; SIGINT or SIGTERM stops every process it started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from flotilla.devstack import free_port
from flotilla.processes import python_env


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, children):
            found |= {child} | _descendants(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": "Bearer flk_cmd_test"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
        return bytes(response.read())


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_one_command_starts_everything_and_a_signal_stops_everything(stop_signal: signal.Signals) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ports = {name: free_port() for name in ("NATS", "DISPATCHER_GRPC", "GATEWAY", "GATEWAY_GRPC", "UI")}
        env = python_env({f"FLOTILLA_{name}_PORT": str(port) for name, port in ports.items()})
        env.update(FLOTILLA_DATA_DIR=str(Path(tmp) / "data"), FLOTILLA_WORKERS="2", FLOTILLA_DEV_API_KEY="flk_cmd_test")
        # Each worker loads the model it is configured with; the scripted one keeps this test fast.
        env.update(FLOTILLA_LLM_BACKEND="scripted", FLOTILLA_LLM_SCRIPTED_REPLIES='["ok"]')
        launcher = subprocess.Popen(
            [sys.executable, "-m", "flotilla.devstack.main"],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        try:
            gateway = f"http://127.0.0.1:{ports['GATEWAY']}"
            deadline = time.monotonic() + 90
            while True:
                assert launcher.poll() is None, launcher.stderr.read() if launcher.stderr else ""
                try:
                    if json.loads(_get(f"{gateway}/v1/workflows")) and b"<html" in _get(
                        f"http://127.0.0.1:{ports['UI']}/"
                    ):
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "the stack did not come up"
                time.sleep(0.2)
            children = _descendants(launcher.pid)
            assert len(children) >= 6  # nats, dispatcher, 2 workers, gateway, ui (+ gunicorn's worker)
            launcher.send_signal(stop_signal)
            _, stderr = launcher.communicate(timeout=60)
            assert "Flotilla is running" in stderr and gateway in stderr
            # Every service's metrics endpoint, and the token that reads them (README, Observability).
            metrics = [line.split() for line in stderr.splitlines() if line.strip().startswith("metrics ")]
            assert {words[1] for words in metrics} == {"dispatcher", "worker-1", "worker-2", "ui", "gateway", "token"}
            assert ["metrics", "gateway", f"{gateway}/metrics"] in metrics
            assert launcher.returncode == 0, stderr[-2000:]
            deadline = time.monotonic() + 10
            while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not [pid for pid in children if _alive(pid)], "processes left behind"
        finally:
            if launcher.poll() is None:
                launcher.kill()
