"""The local stack: every Flotilla process on one machine, no Docker, no internet.

It launches the four services, so it lives beside them, not in libs/ (nothing in libs/ imports a
service). `pants run services/ui` runs `flotilla.devstack.main`; the tests start it as `LocalStack`.
"""

from flotilla.devstack._stack import LocalStack, StackConfig, find_nats_conf, stop_on_signals
from flotilla.processes import Child, NetnsHost, find_nats_server, free_port, jetstream_server, port_open
from flotilla.processes import netns_unavailable

__all__ = [
    "Child",
    "LocalStack",
    "NetnsHost",
    "StackConfig",
    "find_nats_conf",
    "find_nats_server",
    "free_port",
    "jetstream_server",
    "netns_unavailable",
    "port_open",
    "stop_on_signals",
]
