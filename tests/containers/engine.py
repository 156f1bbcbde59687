"""A Docker engine of the test's own: Debian's docker.io (installed when missing), one dockerd with
its own socket, data root, exec root and pid file under a temporary folder, stopped by its pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PACKAGES = ["docker.io", "docker-compose", "debootstrap"]
"""What the tests run: dockerd and its CLI, compose v1 (Debian has no v2), and the base image's debootstrap."""


def install_missing() -> None:
    """Debian's packages, the first time one is missing (test processes may race: one installs)."""
    if all(shutil.which(tool, path=SYSTEM_PATH) for tool in ("dockerd", "docker-compose", "debootstrap")):
        return
    with open(Path(tempfile.gettempdir()) / "flotilla-docker-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        apt = [*sudo, "/usr/bin/apt-get", "-o", "DPkg::Lock::Timeout=600", "-qq"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": SYSTEM_PATH}
        subprocess.run([*apt, "update"], check=True, env=env)
        subprocess.run([*apt, "install", "-y", "--no-install-recommends", *PACKAGES], check=True, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def own_dockerd(timeout_s: float = 120.0) -> Iterator[str]:
    """Start dockerd; yield its DOCKER_HOST; stop it by its pid and delete its data."""
    install_missing()
    _remove_stale()
    root = Path(tempfile.mkdtemp(prefix=_PREFIX, dir="/tmp"))  # short: socket paths
    host = f"unix://{root}/docker.sock"
    pidfile = root / "dockerd.pid"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 (dockerd writes it until it is stopped)
    command = [
        shutil.which("dockerd", path=SYSTEM_PATH) or "dockerd",
        f"--host={host}",
        f"--data-root={root}/data",
        f"--exec-root={root}/exec",
        f"--pidfile={pidfile}",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={"PATH": SYSTEM_PATH})
    try:
        _wait_until_up(host, process, timeout_s)
        yield host
    finally:
        _stop(process)
        log.close()
        print(f"----- dockerd (last lines) -----\n{_tail(root / 'dockerd.log')}")
        shutil.rmtree(root, ignore_errors=True)


_PREFIX = "flotilla-docker-"


def _remove_stale() -> None:
    """What an earlier run left when it was killed before its cleanup: its dockerd is gone (the
    pid in its pid file is not running) but dockerd's bind mount of its data root remains."""
    for root in Path("/tmp").glob(_PREFIX + "*"):
        pidfile = root / "dockerd.pid"
        if not root.is_dir() or (not pidfile.exists() and time.time() - root.stat().st_mtime < 600):
            continue  # another run's dockerd may be starting
        with contextlib.suppress(OSError, ValueError):
            if Path(f"/proc/{int(pidfile.read_text().strip())}").exists():
                continue
        for mount in sorted(_mounts_under(root), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, env={"PATH": SYSTEM_PATH})
        shutil.rmtree(root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    lines = Path("/proc/mounts").read_text().splitlines()
    return [fields[1] for fields in (line.split() for line in lines) if fields[1].startswith(f"{root}/")]


def _wait_until_up(host: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"dockerd exited with {process.returncode}"
        with contextlib.suppress(Exception):
            client = docker.DockerClient(base_url=host, timeout=5)
            try:
                if client.ping():
                    return
            finally:
                client.close()
        assert time.monotonic() < deadline, f"dockerd did not answer within {timeout_s} s"
        time.sleep(0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (dockerd stops its containers and its containerd), SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
