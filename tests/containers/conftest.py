from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from containers.engine import own_dockerd
from containers.stack import MEASURED, build_images, measured


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """Our own dockerd, with the repository's images built in it (compose/build-images.sh)."""
    with own_dockerd() as host:
        seconds = build_images(host)
        measured(f"compose/build-images.sh on an empty engine: {seconds:.0f} s")
        client = docker.DockerClient(base_url=host)
        sizes = {tag: image.attrs["Size"] for image in client.images.list() for tag in image.tags}
        client.close()
        measured("images: " + ", ".join(f"{tag} {size / 1e6:.0f} MB" for tag, size in sorted(sizes.items())))
        yield host


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in MEASURED:
        terminalreporter.write_line(f"[containers] {line}")
