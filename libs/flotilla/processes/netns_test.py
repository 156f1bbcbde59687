"""The network-namespace host: a process in it reaches the root namespace over its veth, a cut
stops that (the connection hangs, it does not close), a heal lets it through again."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from flotilla.processes import NetnsHost, netns_unavailable

REASON = netns_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no network namespaces: {REASON}")

_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.sendall(b"ping")
s.settimeout(float(sys.argv[3]))
print(s.recv(4).decode())
"""


def _echo_server(address: str) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind((address, 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(4)
                conn.sendall(data.replace(b"ping", b"pong"))

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


def _client(host: NetnsHost, address: str, port: int, timeout_s: float) -> subprocess.CompletedProcess[str]:
    argv = [*host.wrap(), sys.executable, "-c", _CLIENT, address, str(port), str(timeout_s)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 20, check=False)


def test_a_process_in_the_namespace_reaches_the_root_only_while_the_link_is_up() -> None:
    with NetnsHost() as host:
        server, port = _echo_server(host.root_address)
        try:
            assert _client(host, host.root_address, port, 5).stdout.strip() == "pong"
            # 127.0.0.1 inside is the namespace's own loopback, not the root's.
            assert _client(host, "127.0.0.1", port, 2).returncode != 0
            host.cut()
            cut = _client(host, host.root_address, port, 1.5)
            assert cut.returncode != 0 and "timed out" in cut.stderr  # dropped, not refused
            host.heal()
            assert _client(host, host.root_address, port, 5).stdout.strip() == "pong"
        finally:
            server.close()
    assert host.name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
