from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flotilla.processes import Child, free_port, python_env

_LAUNCHER = """
import sys, time
from flotilla.processes import Child
child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], {}, lambda: True)
child.start()
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_child_gets_sigterm_when_its_launcher_is_killed() -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER], env=python_env({}), stdout=subprocess.PIPE, text=True
    )
    try:
        assert launcher.stdout is not None
        pid = int(launcher.stdout.readline())
        assert _alive(pid)
        launcher.kill()  # SIGKILL: the launcher stops nothing itself
        launcher.wait()
        deadline = time.monotonic() + 60  # it sleeps 120 s: dying before proves the signal, however loaded the machine
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the child outlived its launcher"
    finally:
        launcher.kill()


def test_a_child_runs_in_its_own_session() -> None:
    child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ), lambda: True)
    child.start()
    try:
        assert child.pid is not None
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.stop()
        assert child.process is not None and child.process.returncode == -signal.SIGTERM


def test_free_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(not low <= port <= high for port in ports)  # no outgoing connection can take one
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
