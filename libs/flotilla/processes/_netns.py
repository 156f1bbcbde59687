"""A "host" on its own link, on one machine: a network namespace joined to the root namespace by a
veth pair. A process started in it (`wrap()` prefixes its command) reaches the root namespace
only through that link, at `root_address`; `cut()` takes the link down (a partition: packets
are dropped, connections hang rather than close), `heal()` brings it back. Needs root and
iproute2 (`ip netns`); `unavailable()` says why not, for a test to skip with."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = NetnsHost()
    try:
        probe.create()
    except RuntimeError as exc:
        return f"`ip netns` does not work here: {exc}"
    finally:
        probe.delete()
    return None


class NetnsHost:
    """One namespace and its veth pair, on a /30 of 10.213.0.0/16 picked at random (interface
    names are at most 15 characters, so each host has a short random tag)."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.name = f"flotilla-{self.tag}"
        self.root_link = f"fr{self.tag}"
        self.inner_link = f"fn{self.tag}"
        block = secrets.randbelow(16384) * 4
        base = ipaddress.IPv4Address("10.213.0.0") + block
        self.root_address = str(base + 1)
        """The root namespace's end: servers a process in the namespace must reach listen here."""
        self.address = str(base + 2)
        """The namespace's own end."""
        self.created = False

    def create(self) -> NetnsHost:
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", self.root_link, "type", "veth", "peer", "name", self.inner_link)
        _ip("link", "set", self.inner_link, "netns", self.name)
        _ip("addr", "add", f"{self.root_address}/30", "dev", self.root_link)
        _ip("link", "set", self.root_link, "up")
        inside = ["netns", "exec", self.name, "ip"]
        _ip(*inside, "addr", "add", f"{self.address}/30", "dev", self.inner_link)
        _ip(*inside, "link", "set", self.inner_link, "up")
        _ip(*inside, "link", "set", "lo", "up")
        return self

    def wrap(self) -> list[str]:
        """What to put before a command to run it in the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Take the link down: nothing passes either way until `heal()`."""
        _ip("link", "set", self.root_link, "down")

    def heal(self) -> None:
        _ip("link", "set", self.root_link, "up")

    def delete(self) -> None:
        """Remove the namespace (its processes should be stopped first) and the veth pair."""
        if not self.created:
            return
        subprocess.run(["ip", "link", "del", self.root_link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        self.created = False

    def __enter__(self) -> NetnsHost:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()
