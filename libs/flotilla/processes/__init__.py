"""Local processes started and stopped by pid: a child with a readiness probe, a bare JetStream
server or cluster, free ports, and network namespaces as hosts (the local stack, tests and benchmarks)."""

from flotilla.processes._child import (
    Child,
    find_nats_server,
    free_port,
    jetstream_cluster,
    jetstream_server,
    packaged_executable,
    port_open,
    python_env,
)
from flotilla.processes._netns import NetnsHost
from flotilla.processes._netns import unavailable as netns_unavailable

__all__ = [
    "Child",
    "NetnsHost",
    "find_nats_server",
    "packaged_executable",
    "free_port",
    "jetstream_cluster",
    "jetstream_server",
    "netns_unavailable",
    "port_open",
    "python_env",
]
