"""compose/docker-compose.yml as a person runs it: the repository's images, a generated .env, one
compose project on our own engine, ports published on free 127.0.0.1 ports."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import httpx
from docker.models.containers import Container

from containers.engine import SYSTEM_PATH, free_port

USER_SCOPES = ["runs:read", "runs:write", "workflows:read"]
MEASURED: list[str] = []
"""Timings worth a note (conftest.py prints them at the end of the session, whatever the capture)."""


def measured(line: str) -> None:
    MEASURED.append(line)
    print(line)


def repo_root() -> Path:
    """The checkout the test builds from: ./pants exports FLOTILLA_REPO_ROOT (a Pants sandbox holds
    only the test's own files, not the compose files, scripts and Pants itself)."""
    root = os.environ.get("FLOTILLA_REPO_ROOT")
    assert root, "FLOTILLA_REPO_ROOT is not set: run the container tests through ./pants"
    return Path(root)


def build_images(docker_host: str) -> float:
    """compose/build-images.sh against our engine; returns how long it took."""
    started = time.monotonic()
    env = {
        "PATH": SYSTEM_PATH,
        "HOME": os.environ["HOME"],
        "DOCKER_HOST": docker_host,
        # Other Pants runs (the one running this test, other checkouts) go on at the same time.
        "PANTS_CONCURRENT": "true",
        "NO_SCIE_WARNING": "1",
    }
    for name in ("PIP_CONFIG_FILE", "CI", "PANTS_PANTSD"):
        if name in os.environ:
            env[name] = os.environ[name]
    subprocess.run([str(repo_root() / "compose/build-images.sh")], check=True, env=env, cwd=repo_root())
    return time.monotonic() - started


def generated_env(directory: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A .env with fresh passwords and keys, as compose/README.md tells a person to write it."""
    ui_key = "flk_ui_" + secrets.token_urlsafe(24)
    user_key = "flk_ada_" + secrets.token_urlsafe(24)
    keys = [
        {"name": "ui", "key": ui_key, "scopes": ["act_as"]},
        {"name": "ada", "key": user_key, "scopes": USER_SCOPES},
    ]
    values = {
        "FLOTILLA_DISPATCHER_NATS_PASSWORD": "p" + secrets.token_urlsafe(24),
        "FLOTILLA_WORKER_NATS_PASSWORD": "p" + secrets.token_urlsafe(24),
        "FLOTILLA_OPERATOR_NATS_PASSWORD": "p" + secrets.token_urlsafe(24),
        "FLOTILLA_UI_GATEWAY_API_KEY": ui_key,
        "FLOTILLA_GATEWAY_API_KEYS": json.dumps(keys, separators=(",", ":")),
        "FLOTILLA_GATEWAY_PUBLISH_PORT": str(free_port()),
        "FLOTILLA_UI_PUBLISH_PORT": str(free_port()),
        # Two runs per worker, so that runs spread over the workers a test scales to.
        "FLOTILLA_WORKER_MAX_CONCURRENT_RUNS": "2",
        "FLOTILLA_WORKER_WORKFLOWS": "flotilla.examples.benchmarks:with_examples",
        "FLOTILLA_WORKER_DRAIN_TIMEOUT_S": "5",
        "FLOTILLA_DISPATCHER_JOB_ACK_WAIT_S": "10",
        # Metrics on, as compose/README.md (Metrics) says to turn them on.
        "FLOTILLA_METRICS_TOKEN": "flk_metrics_" + secrets.token_urlsafe(24),
        "FLOTILLA_METRICS_PORT": "9090",
        **(extra or {}),
    }
    (directory / ".env").write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return values | {"ADA_KEY": user_key}


class ComposeProject:
    """One `docker-compose -p <unique name>` project of the repository's compose file(s)."""

    def __init__(self, docker_host: str, workdir: Path, files: list[str], extra_env: dict[str, str] | None = None):
        self.docker_host = docker_host
        self.name = "flt" + uuid.uuid4().hex[:10]
        self.env_file = workdir / ".env"
        self.values = generated_env(workdir, extra_env)
        self.files = [str(repo_root() / "compose" / name) for name in files]
        self.client = docker.DockerClient(base_url=docker_host, timeout=120)
        self.gateway_url = f"http://127.0.0.1:{self.values['FLOTILLA_GATEWAY_PUBLISH_PORT']}"
        self.ui_url = f"http://127.0.0.1:{self.values['FLOTILLA_UI_PUBLISH_PORT']}"
        self.up_at = 0.0
        """time.monotonic() when `up` was started."""

    def compose(self, *args: str, check: bool = True, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-p", self.name, "--env-file", str(self.env_file)]
        for file in self.files:
            command += ["-f", file]
        env = {"PATH": SYSTEM_PATH, "DOCKER_HOST": self.docker_host, "HOME": os.environ.get("HOME", "/tmp")}
        result = subprocess.run(
            [*command, *args], env=env, text=True, capture_output=True, timeout=timeout_s, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def containers(self, service: str, *, all: bool = False) -> list[Container]:
        labels = [f"com.docker.compose.project={self.name}", f"com.docker.compose.service={service}"]
        found: list[Container] = self.client.containers.list(all=all, filters={"label": labels})
        return found

    def health(self, container: Container) -> str:
        container.reload()
        return str(container.attrs["State"].get("Health", {}).get("Status", "none"))

    def wait_healthy(self, service: str, count: int, timeout_s: float = 180) -> list[Container]:
        deadline = time.monotonic() + timeout_s
        while True:
            running = self.containers(service)
            healthy = [c for c in running if self.health(c) == "healthy"]
            if len(running) == count and len(healthy) == count:
                return healthy
            assert (
                time.monotonic() < deadline
            ), f"{service}: {len(healthy)} of {len(running)} healthy, wanted {count}\n" + self.logs(service)
            time.sleep(1)

    def logs(self, service: str, lines: int = 40) -> str:
        return self.compose("logs", "--no-color", f"--tail={lines}", service, check=False).stdout

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.values['ADA_KEY']}"}
        return httpx.Client(base_url=self.gateway_url, headers=headers, timeout=30.0)


@contextmanager
def compose_project(
    docker_host: str, workdir: Path, files: list[str], extra_env: dict[str, str] | None = None
) -> Iterator[ComposeProject]:
    """`up -d` (waiting for health); `down -v` however the test ends."""
    project = ComposeProject(docker_host, workdir, files, extra_env)
    try:
        project.up_at = time.monotonic()
        project.compose("up", "-d")
        yield project
    finally:
        for service in ("nats", "dispatcher", "worker", "gateway"):
            print(f"----- {service} -----\n{project.logs(service, lines=15)}")
        project.compose("down", "-v", "--remove-orphans", check=False)
        try:
            labels = {"label": f"com.docker.compose.project={project.name}"}
            left = [c.name for c in project.client.containers.list(all=True, filters=labels)]
            left += [v.name for v in project.client.volumes.list(filters=labels)]
            assert not left, f"down -v left {left}"
        finally:
            project.client.close()
