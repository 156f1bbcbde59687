from __future__ import annotations

from collections.abc import Iterator

import pytest

from containers.engine import own_dockerd
from containers.stack import build_images


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """Our own dockerd, with the repository's images built in it (compose/build-images.sh)."""
    with own_dockerd() as host:
        seconds = build_images(host)
        print(f"[containers] compose/build-images.sh on an empty engine: {seconds:.0f} s")
        yield host
