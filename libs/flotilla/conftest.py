from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.processes import Child, jetstream_cluster, jetstream_server


@pytest.fixture(scope="module")
def nats_server() -> Iterator[Child]:
    """A real nats-server with JetStream (no users) for the module's tests."""
    with tempfile.TemporaryDirectory(prefix="flotilla-js-") as tmp:
        server = jetstream_server(Path(tmp))
        server.start()
        server.wait_ready(30)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def nats_cluster() -> Iterator[list[Child]]:
    """Three real nats-servers with JetStream in one cluster (no users), for R3 streams."""
    with tempfile.TemporaryDirectory(prefix="flotilla-js-") as tmp:
        nodes = jetstream_cluster(Path(tmp))
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                node.wait_ready(30)
            yield nodes
        finally:
            for node in nodes:
                node.stop()
