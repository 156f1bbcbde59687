"""The local stack: a real nats-server with the repo's config, the dispatcher, N workers, the
gateway and the UI, each its own process on 127.0.0.1. `pants run services/ui` and the
integration tests both start it from here. Each child's environment is written from its
service's settings class (`settings_env`), so no variable name is spelled twice."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from grpc import aio
from nats.aio.client import Client

from flotilla.auth import SCOPE_ACT_AS, SCOPE_ADMIN, USER_SCOPES
from flotilla.credentials import Credentials, write_credentials
from flotilla.jetstream import inbox_prefix
from flotilla.dispatcher.config import DispatcherSettings
from flotilla.gateway.config import GatewaySettings
from flotilla.processes import Child, find_nats_server, free_port, port_open, python_env
from flotilla.rpc import aio_channel
from flotilla.settings import TracingSettings, settings_env
from flotilla.ui.config import UiSettings
from flotilla.worker.config import WorkerSettings

NATS_CONF_NAME = "nats-server.conf"


def find_nats_conf(explicit: str | None = None) -> Path:
    """$FLOTILLA_NATS_CONF, else nats-server.conf in the working directory or a parent of it."""
    value = explicit or os.environ.get("FLOTILLA_NATS_CONF")
    if value:
        return Path(value)
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / NATS_CONF_NAME).is_file():
            return folder / NATS_CONF_NAME
    raise FileNotFoundError(f"{NATS_CONF_NAME} not found above {Path.cwd()}; set FLOTILLA_NATS_CONF")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own loopback URL)
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(kw_only=True)
class StackConfig:
    """Ports 0 mean "pick a free one"."""

    data_dir: Path
    workers: int = 2
    nats_port: int = 4222
    dispatcher_port: int = 50051
    gateway_port: int = 8000
    gateway_grpc_port: int = 50052
    ui_port: int = 8888
    with_ui: bool = True
    log_dir: Path | None = None
    """Where each process logs (one file each); None: the launcher's own stdout/stderr."""
    nats_server: str | None = None
    nats_conf: str | None = None
    job_ack_wait_s: float = 30.0
    job_max_attempts: int = 3
    tls: bool = True
    """TLS on every connection between services (NATS, both gRPC hops), with credentials the stack
    makes at each start; False: plaintext (service tokens still authenticate the gRPC hops)."""
    nats_nodes: int = 1
    """3: an R3 JetStream cluster of three nats-servers (every stream and bucket replicated)."""
    nats_host: str = "127.0.0.1"
    """The address NATS listens on and the services use (a veth address reaches a worker in a
    network namespace)."""
    nats_monitor_port: int | None = None
    """nats-server's HTTP monitoring (/varz, /connz) on this port of nats_host (0: a free one);
    None: off. The benchmarks read messages per run from it."""
    max_file_store: str | None = None
    """Override the config's JetStream file store limit (e.g. "128MB", to fill it in a test)."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every service (e.g. FLOTILLA_WORKER_WORKFLOWS)."""
    dev_api_key: str | None = None
    """The developer's API key (all scopes, admin); None: a fresh one each start."""
    api_keys: list[dict[str, object]] = field(default_factory=list)
    """More gateway identities, as FLOTILLA_GATEWAY_API_KEYS entries."""
    ui_password: str | None = None
    """Password of the UI user `developer` (identity developer); None: a fresh one each start."""
    ui_users: list[dict[str, str]] = field(default_factory=list)
    """More people who sign in to the UI, as FLOTILLA_UI_USERS entries."""
    metrics: bool = True
    """Prometheus metrics on: the gateway's /metrics, and a free metrics port for every other service."""
    tracing: TracingSettings | None = None
    """Every service's tracing settings (flotilla.tracing); None: what each inherits from the environment."""

    def __post_init__(self) -> None:
        if self.ui_password is None:
            self.ui_password = secrets.token_urlsafe(12)
        for name in ("nats_port", "dispatcher_port", "gateway_port", "gateway_grpc_port", "ui_port"):
            if getattr(self, name) == 0:
                setattr(self, name, free_port())


class LocalStack:
    """`start()` brings everything up in order and waits until each part answers; `stop()` stops
    them in reverse order, by pid. Use as a context manager."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        # NATS parses an environment value as a config value: start with a letter so it stays a string.
        self.passwords = {name: "pw" + secrets.token_hex(20) for name in ("dispatcher", "worker", "operator")}
        self.dev_api_key = config.dev_api_key or "flk_dev_" + secrets.token_hex(16)
        self.ui_api_key = "flk_ui_" + secrets.token_hex(16)
        """The UI's own service identity (act_as), never printed."""
        self.nats_nodes: list[Child] = []
        self.dispatcher: Child | None = None
        self.workers: list[Child] = []
        self.gateway: Child | None = None
        self.ui: Child | None = None
        self.metrics_token = secrets.token_urlsafe(24) if config.metrics else ""
        """The bearer token every service's /metrics asks scrapers for (a new one each start)."""
        self.metrics_ports: dict[str, int] = {}
        """Metrics port of each child but NATS and the gateway (which serves /metrics on its HTTP port), by name."""
        self.credentials = Credentials(config.data_dir / "credentials")
        """Written at each start: a CA, the servers' TLS certificates, the gateway's service key."""
        self._stopping = threading.Event()

    @property
    def nats(self) -> Child | None:
        """The (first) nats-server."""
        return self.nats_nodes[0] if self.nats_nodes else None

    @property
    def nats_url(self) -> str:
        """Every node's URL, comma-separated (what the services are given)."""
        if not self.nats_nodes:
            return f"nats://{self.config.nats_host}:{self.config.nats_port}"
        return ",".join(node.url for node in self.nats_nodes)

    @property
    def dispatcher_address(self) -> str:
        return f"127.0.0.1:{self.config.dispatcher_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.config.gateway_port}"

    @property
    def gateway_grpc_address(self) -> str:
        return f"127.0.0.1:{self.config.gateway_grpc_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ui_port}"

    def metrics_urls(self) -> dict[str, str]:
        """Where each service serves its metrics, by child name (empty when metrics are off)."""
        if not self.metrics_token:
            return {}
        urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in self.metrics_ports.items()}
        if self.gateway is not None:
            urls["gateway"] = f"{self.gateway_url}/metrics"
        return urls

    def _metrics(self, name: str) -> dict[str, object]:
        """The metrics settings of child `name`: a free port of its own and the stack's token."""
        if not self.metrics_token:
            return {}
        port = self.metrics_ports.setdefault(name, free_port())
        return {"metrics_port": port, "metrics_token": self.metrics_token}

    def children(self) -> list[Child]:
        found = [*self.nats_nodes, self.dispatcher, *self.workers, self.gateway, self.ui]
        return [c for c in found if c is not None]

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0) -> None:
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        if cfg.log_dir:
            cfg.log_dir.mkdir(parents=True, exist_ok=True)
        write_credentials(self.credentials.root, hosts=sorted({"127.0.0.1", "localhost", cfg.nats_host}))
        self.nats_nodes = self._nats_children()
        for node in self.nats_nodes:
            node.start()
        for node in self.nats_nodes:
            node.wait_ready(timeout_s)
        self.dispatcher = self._service(
            "dispatcher", "flotilla.dispatcher.main", self._dispatcher_env(), lambda: port_open(cfg.dispatcher_port)
        )
        self.dispatcher.start()
        self.dispatcher.wait_ready(timeout_s)
        for i in range(cfg.workers):
            self.add_worker(f"worker-{i + 1}")
        self.gateway = self._service(
            "gateway", "flotilla.gateway.main", self._gateway_env(), lambda: _http_ok(f"{self.gateway_url}/readyz")
        )
        self.gateway.start()
        if cfg.with_ui:
            self.ui = self._service("ui", "flotilla.ui.main", self._ui_env(), lambda: port_open(cfg.ui_port))
            self.ui.start()
        for child in self.children():
            child.wait_ready(timeout_s)
        if cfg.workers:
            self._wait_for_catalogue(timeout_s)

    def add_worker(
        self, worker_id: str, *, wait: bool = False, wrap: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> Child:
        """Start one more worker; `wrap` prefixes its command (`ip netns exec NS` runs it in a
        network namespace); `env` overrides its settings (e.g. another drain timeout)."""
        settings = {
            **settings_env(
                WorkerSettings,
                nats_url=self.nats_url,
                nats_password=self.passwords["worker"],
                worker_id=worker_id,
                # Ctrl-C should not wait long for runs that wait for a person; they resume elsewhere.
                drain_timeout_s=3,
                **self._metrics(worker_id),
                **self._tls_client(),
            ),
            **(env or {}),
        }
        child = self._service(worker_id, "flotilla.worker.main", settings, lambda: True)
        child.argv = [*wrap, *child.argv]
        child.start()
        self.workers.append(child)
        if wait:
            self._wait_for_catalogue(60.0)
        return child

    def stop(self) -> None:
        self._stopping.set()
        for child in reversed(self.children()):
            child.stop()

    def run_until(self, stop: threading.Event) -> None:
        """Print where everything is, restart a child that dies, and stop all once `stop` is set."""
        self.print_summary()
        while not stop.wait(0.5):
            for child in self.children():
                if not child.alive() and not self._stopping.is_set():
                    code = child.process.returncode if child.process else "?"
                    print(f"[flotilla] {child.name} exited ({code}); restarting", file=sys.stderr)
                    child.start()
        print("[flotilla] stopping...", file=sys.stderr)
        self.stop()
        print("[flotilla] stopped", file=sys.stderr)

    def print_summary(self) -> None:
        lines = [
            "",
            "Flotilla is running:",
            f"  UI          {self.ui_url}" if self.ui else "",
            f"  REST API    {self.gateway_url}/v1   (OpenAPI: {self.gateway_url}/docs)",
            f"  gRPC API    {self.gateway_grpc_address} (flotilla.v1.Gateway)",
            f"  UI sign-in  developer / {self.config.ui_password}   (or paste the API key)" if self.ui else "",
            f"  API key     {self.dev_api_key}   (Authorization: Bearer <key>; a new one each start)",
            f"  dispatcher  {self.dispatcher_address} (gRPC)",
            f"  NATS        {self.nats_url}  (JetStream data in {self.config.data_dir.resolve()})",
            f"  workers     {len(self.workers)}",
            *self._metrics_summary(),
            *self._tracing_summary(),
            "Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(line for line in lines if line is not None), file=sys.stderr, flush=True)

    def _metrics_summary(self) -> list[str]:
        urls = self.metrics_urls()
        if not urls:
            return []
        lines = [f"  metrics     {name:<11} {url}" for name, url in urls.items()]
        return [*lines, f"  metrics token {self.metrics_token}   (Authorization: Bearer <token>; a new one each start)"]

    def _tracing_summary(self) -> list[str]:
        tracing = self.config.tracing
        if tracing is None or not tracing.otlp_endpoint:
            return []
        return [f"  traces      OTLP/gRPC to {tracing.otlp_endpoint}"]

    def _nats_children(self) -> list[Child]:
        cfg = self.config
        env = dict(os.environ)
        # nats-server.conf reads each user's password from the variable its service reads it from.
        env.update(settings_env(DispatcherSettings, nats_password=self.passwords["dispatcher"]))
        env.update(settings_env(WorkerSettings, nats_password=self.passwords["worker"]))
        env["FLOTILLA_OPERATOR_NATS_PASSWORD"] = self.passwords["operator"]
        base = find_nats_conf(cfg.nats_conf)
        ports = [cfg.nats_port] + [free_port() for _ in range(cfg.nats_nodes - 1)]
        routes = [free_port() for _ in range(cfg.nats_nodes)] if cfg.nats_nodes > 1 else []
        children = []
        for i, port in enumerate(ports):
            name = "nats" if cfg.nats_nodes == 1 else f"nats-{i + 1}"
            conf = base
            if cfg.nats_nodes > 1 or cfg.max_file_store:
                conf = cfg.data_dir / f"{name}.conf"
                conf.write_text(_derived_conf(base.read_text(), name, cfg.nats_host, routes, i, cfg.max_file_store))
            argv = [
                find_nats_server(cfg.nats_server),
                "-c", str(conf),
                "-a", cfg.nats_host,
                "-p", str(port),
                "-sd", str(cfg.data_dir / ("jetstream" if cfg.nats_nodes == 1 else name)),
            ]  # fmt: skip
            if cfg.nats_monitor_port is not None and i == 0:
                if cfg.nats_monitor_port == 0:
                    cfg.nats_monitor_port = free_port()
                argv += ["-m", str(cfg.nats_monitor_port)]
            if cfg.tls:
                creds = self.credentials
                argv += ["--tls", "--tlscert", str(creds.cert_file("nats")), "--tlskey", str(creds.key_file("nats"))]
            url = f"nats://{cfg.nats_host}:{port}"
            ready = _port_ready(cfg.nats_host, port)
            children.append(Child(name, argv, env, ready, self._log_path(name), url=url))
        return children

    def _service(self, name: str, module: str, env: dict[str, str], ready: object) -> Child:
        tracing = self.config.tracing.tracing_env() if self.config.tracing is not None else {}
        full_env = python_env({**tracing, **self.config.env, **env})
        return Child(name, [sys.executable, "-m", module], full_env, ready, self._log_path(name))  # type: ignore[arg-type]

    def _log_path(self, name: str) -> Path | None:
        return self.config.log_dir / f"{name}.log" if self.config.log_dir else None

    @property
    def ca_file(self) -> str | None:
        """The CA every client of the stack trusts, or None when TLS is off."""
        return str(self.credentials.ca_file) if self.config.tls else None

    def nats_tls(self) -> ssl.SSLContext | None:
        """What a client of this stack's NATS needs for TLS (None when TLS is off)."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    async def nats_connect(self, user: str, password: str | None = None, **options: Any) -> Client:
        """A NATS connection as `user` (its stack password unless `password` is given), over TLS
        when the stack uses it; `options` go to nats.connect."""
        secret = self.passwords.get(user, "") if password is None else password
        options.setdefault("tls", self.nats_tls())
        options.setdefault("inbox_prefix", inbox_prefix(user))
        return await nats.connect(self.nats_url.split(","), user=user, password=secret, **options)

    def grpc_channel(self, address: str, **options: Any) -> aio.Channel:
        """An asyncio channel to one of this stack's gRPC servers (TLS verified with its CA when on)."""
        return aio_channel(address, ca_file=self.ca_file, **options)

    def _tls_server(self, server: str, cert_field: str, key_field: str) -> dict[str, str]:
        if not self.config.tls:
            return {}
        return {cert_field: str(self.credentials.cert_file(server)), key_field: str(self.credentials.key_file(server))}

    def _tls_client(self, ca_field: str = "nats_tls_ca_file") -> dict[str, str]:
        return {ca_field: str(self.credentials.ca_file)} if self.config.tls else {}

    def _dispatcher_env(self) -> dict[str, str]:
        store = self.config.max_file_store
        return settings_env(
            DispatcherSettings,
            nats_url=self.nats_url,
            nats_password=self.passwords["dispatcher"],
            grpc_port=self.config.dispatcher_port,
            trusted_services_dir=self.credentials.dispatcher_trusted_dir,
            job_ack_wait_s=self.config.job_ack_wait_s,
            job_max_attempts=self.config.job_max_attempts,
            **self._metrics("dispatcher"),
            **({"jetstream_replicas": 3} if self.config.nats_nodes >= 3 else {}),
            **({"store_bytes": _size_bytes(store)} if store else {}),
            **self._tls_client(),
            **self._tls_server("dispatcher", "grpc_tls_cert_file", "grpc_tls_key_file"),
        )

    def _gateway_env(self) -> dict[str, str]:
        developer = {"name": "developer", "key": self.dev_api_key, "scopes": sorted(USER_SCOPES | {SCOPE_ADMIN})}
        ui = {"name": "ui", "key": self.ui_api_key, "scopes": [SCOPE_ACT_AS]}
        return settings_env(
            GatewaySettings,
            port=self.config.gateway_port,
            grpc_port=self.config.gateway_grpc_port,
            dispatcher_address=self.dispatcher_address,
            service_key_file=self.credentials.gateway_service_key,
            api_keys=json.dumps([developer, ui, *self.config.api_keys]),
            **({"metrics_token": self.metrics_token} if self.metrics_token else {}),
            **self._tls_client("dispatcher_tls_ca_file"),
            **self._tls_server("gateway", "grpc_tls_cert_file", "grpc_tls_key_file"),
        )

    def _ui_env(self) -> dict[str, str]:
        users = [{"username": "developer", "identity": "developer", "password": self.config.ui_password}]
        return settings_env(
            UiSettings,
            port=self.config.ui_port,
            gateway_url=self.gateway_url,
            gateway_grpc_address=self.gateway_grpc_address,
            gateway_api_key=self.ui_api_key,
            users=json.dumps(users + self.config.ui_users),
            **self._metrics("ui"),
            **self._tls_client("gateway_tls_ca_file"),
        )

    def _wait_for_catalogue(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
                    f"{self.gateway_url}/v1/workflows", headers={"Authorization": f"Bearer {self.dev_api_key}"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
                    if response.status == 200 and response.read().strip() not in (b"[]", b""):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("no worker advertised its workflows in time")


def _port_ready(host: str, port: int) -> Callable[[], bool]:
    return lambda: port_open(port, host)


def _size_bytes(size: str) -> int:
    """A NATS size ("128MB", "2G") in bytes, counting 1000s (at most what NATS allows)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", size.upper())
    if match is None:
        raise ValueError(f"not a size: {size!r}")
    power: int = " KMGT".index(match.group(2) or " ")
    return int(match.group(1)) * int(1000**power)


def _derived_conf(text: str, name: str, host: str, routes: list[int], index: int, max_file_store: str | None) -> str:
    """The repo's config for one node of a test stack: its own server name, a cluster block
    (when there are routes), another store limit."""
    text = re.sub(r"(?m)^server_name:.*$", f"server_name: {name}", text)
    if max_file_store:
        text = re.sub(r"(?m)^(\s*)max_file_store:.*$", rf"\g<1>max_file_store: {max_file_store}", text)
    if routes:
        peers = ", ".join(f"nats-route://{host}:{port}" for j, port in enumerate(routes) if j != index)
        text += f"\ncluster {{\n  name: flotilla\n  listen: {host}:{routes[index]}\n  routes: [{peers}]\n}}\n"
    return text


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM; install it before starting, so a signal that arrives
    during start-up still stops everything in order."""
    received = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: received.set())
    return received
