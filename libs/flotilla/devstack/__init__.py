"""The local stack: every Flotilla process on one machine, no Docker, no internet."""

from flotilla.devstack._netns import NetnsHost
from flotilla.devstack._netns import unavailable as netns_unavailable
from flotilla.devstack._processes import Child, find_nats_server, free_port, jetstream_server, port_open
from flotilla.devstack._stack import LocalStack, StackConfig, find_nats_conf, stop_on_signals

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
