"""The Kubernetes manifests (k8s/), checked offline: every object against the Kubernetes API
schemas kubernetes-validate carries (KEDA's ScaledObject against a schema written from KEDA's
docs), and the invariants that make them work: each service's settings, built from its pod's
environment and mounted Secrets, pass the service's own start-up checks; every Secret and key a pod
uses exists and each Secret holds only what its service uses; the NetworkPolicies allow exactly
the trust model's edges; images, probes, security contexts; the NATS config forms a TLS cluster on
a real nats-server and serves the numbers KEDA's scaler reads."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from cryptography import x509
import nats
import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from flotilla.credentials import write_credentials
from flotilla.processes import Child, find_nats_server, free_port, port_open
from flotilla.jetstream import JOBS_STREAM, Layout, job_subject, provision
from flotilla.jetstream._layout import WORKERS_CONSUMER
from flotilla.llm import LlmSettings
from flotilla.devstack.config import StackSettings
from flotilla.dispatcher.config import DispatcherSettings
from flotilla.gateway.config import GatewaySettings
from flotilla.ui.config import UiSettings
from flotilla.worker.config import WorkerSettings
from kustomize import Object, pod_specs, render

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
BASE = K8S / "base"
FIRST_RUN = K8S / "overlays" / "first-run"
NAMESPACE = "flotilla"
SERVICES = ("nats", "dispatcher", "worker", "gateway", "ui")
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
"""The oldest release still commonly run, and the newest the package has schemas for."""
NAME_LABEL = "app.kubernetes.io/name"
EXTERNAL_SECRETS = {"flotilla-ingress-tls"}
"""Made by whoever runs the Ingress (cert-manager, or by hand: k8s/README.md)."""


@pytest.fixture(scope="module")
def first_run() -> Iterator[tuple[list[Object], Path]]:
    """The first-run overlay rendered with credentials and secrets made the way k8s/README.md
    says (flotilla.credentials, make-secrets.sh), in a copy of k8s/."""
    with tempfile.TemporaryDirectory(prefix="flotilla-k8s-") as tmp:
        copy = Path(tmp) / "k8s"
        subprocess.run(["cp", "-r", str(K8S), str(copy)], check=True)
        overlay = copy / "overlays" / "first-run"
        write_credentials(overlay / "credentials", hosts=["*.nats"])
        subprocess.run(["bash", str(overlay / "make-secrets.sh")], check=True, capture_output=True)
        yield render(overlay), overlay


@pytest.fixture(scope="module")
def base() -> list[Object]:
    return render(BASE)


def _named(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _workload(objects: list[Object], service: str) -> Object:
    kind = "StatefulSet" if service == "nats" else "Deployment"
    return _named(objects, kind, service)


def _container(objects: list[Object], service: str) -> Object:
    (container,) = _workload(objects, service)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _secret_data(objects: list[Object], name: str) -> dict[str, bytes]:
    secret = _named(objects, "Secret", name)
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


# -- Schemas --------------------------------------------------------------------------------------

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    # keda.sh/v1alpha1 ScaledObject, from KEDA's docs (concepts/scaling-deployments, the
    # nats-jetstream scaler's page): the fields and types KEDA 2.x accepts.
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _STRING_MAP,
                           "annotations": _STRING_MAP},  # fmt: skip
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        k: {"type": "string"} for k in ("apiVersion", "kind", "name", "envSourceContainerName")
                    },
                },
                **{k: {"type": "integer", "minimum": 0} for k in (
                    "pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "idleReplicaCount",
                    "minReplicaCount", "maxReplicaCount")},  # fmt: skip
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {"failureThreshold": {"type": "integer"}, "replicas": {"type": "integer"}},
                },
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STRING_MAP,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}
NATS_JETSTREAM_TRIGGER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["natsServerMonitoringEndpoint", "account", "stream", "consumer"],
    "additionalProperties": False,
    "properties": {
        "natsServerMonitoringEndpoint": {"type": "string", "pattern": r"^[a-z0-9.-]+:[0-9]+$"},
        "account": {"type": "string", "minLength": 1},
        "stream": {"type": "string", "minLength": 1},
        "consumer": {"type": "string", "minLength": 1},
        "lagThreshold": {"type": "string", "pattern": r"^[1-9][0-9]*$"},
        "activationLagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
        "useHttps": {"enum": ["true", "false"]},
    },
}


def test_every_object_validates_against_the_kubernetes_api_schemas(
    base: list[Object], first_run: tuple[list[Object], Path]
) -> None:
    objects, _ = first_run
    assert len(objects) == len(base) + 5  # the base plus one Secret per service
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
            for trigger in obj["spec"]["triggers"]:
                assert trigger["type"] == "nats-jetstream"
                jsonschema.validate(trigger["metadata"], NATS_JETSTREAM_TRIGGER_SCHEMA)
            checked += 1
            continue
        for version in KUBERNETES_VERSIONS:
            # strict: no field the API does not know (a typo is an error, not ignored).
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    kinds = sorted({o["kind"] for o in objects})
    print(f"validated {len(objects)} objects ({checked} checks; {', '.join(kinds)}) against {KUBERNETES_VERSIONS}")
    assert checked == (len(objects) - 1) * len(KUBERNETES_VERSIONS) + 1
    with pytest.raises(kubernetes_validate.ValidationError):  # the check is real
        broken = json.loads(json.dumps(_workload(objects, "worker")))
        broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pot"] = 8080
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_renderer_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: [{path: p.yaml}]\n")
    with pytest.raises(ValueError, match="patches"):
        render(tmp_path)


# -- Settings and Secrets -------------------------------------------------------------------------


def _known_variables() -> set[str]:
    names: set[str] = set()
    classes: list[type[BaseSettings]] = [DispatcherSettings, WorkerSettings, GatewaySettings, UiSettings, StackSettings]
    for cls in classes:
        for field in cls.model_fields.values():
            if isinstance(field.validation_alias, AliasChoices):
                names |= {str(choice) for choice in field.validation_alias.choices}
    names |= {f"FLOTILLA_LLM_{name}".upper() for name in LlmSettings.model_fields}
    return names


def _pod_environment(objects: list[Object], service: str, files: Path) -> dict[str, str]:
    """The environment the service's container gets, with the Secret files it mounts written
    under `files` (and the variables that name them pointing there)."""
    pod = _workload(objects, service)["spec"]["template"]["spec"]
    container = _container(objects, service)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})  # none: a volumeClaimTemplate
        if "secret" not in volume:
            continue
        data = _secret_data(objects, volume["secret"]["secretName"])
        target = files / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for item in volume["secret"]["items"]:
            (target / item["path"]).write_bytes(data[item["key"]])
        mounts[mount["mountPath"]] = target
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            value = str(var["value"])
            for mount_path, target in mounts.items():
                if value.startswith(mount_path + "/") or value == mount_path:
                    value = str(target) + value[len(mount_path) :]
            env[var["name"]] = value
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            data = _secret_data(objects, ref["name"])
            if ref["key"] in data:
                env[var["name"]] = data[ref["key"]].decode()
            else:
                assert ref.get("optional"), f"{service}: {var['name']} names a missing key {ref}"
        else:
            env[var["name"]] = f"{service}-0"  # a fieldRef: the pod's name
    return env


@pytest.fixture()
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("FLOTILLA_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_each_service_starts_with_what_its_pod_is_given(
    first_run: tuple[list[Object], Path], clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each container's environment and files pass the service's own start-up checks (the ones
    that make a misconfigured service exit naming the variable), and fit the others'."""
    from flotilla.dispatcher.main import service_verifier
    from flotilla.gateway.app import create_app, service_signer
    from flotilla.auth import parse_api_keys, hash_key, SCOPE_ACT_AS
    from flotilla.rpc import server_credentials

    objects, _ = first_run
    known = _known_variables()
    envs = {service: _pod_environment(objects, service, tmp_path / service) for service in SERVICES}
    # nats-server.conf reads its users' passwords from the environment (an unset one stops the server).
    conf_reads = set(re.findall(r"\$(FLOTILLA_\w+)", (ROOT / "nats-server.conf").read_text()))
    assert {n for n in envs["nats"] if n.startswith("FLOTILLA_")} == conf_reads
    assert all(envs["nats"][n] for n in conf_reads)
    for service, env in envs.items():
        unknown = {n for n in env if n.startswith("FLOTILLA_")} - known
        assert service == "nats" or not unknown, f"{service} is given variables no service reads: {unknown}"

    def settings_of(service: str, cls: type[BaseSettings]) -> Any:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in envs[service].items():
                patch.setenv(name, value)
            return cls(), (LlmSettings.from_env() if service == "worker" else None)

    nats_env = envs["nats"]
    statefulset = _workload(objects, "nats")
    nodes = [f"nats-{i}.{statefulset['spec']['serviceName']}" for i in range(statefulset["spec"]["replicas"])]

    dispatcher, _ = settings_of("dispatcher", DispatcherSettings)
    assert sorted(service_verifier(dispatcher).identities) == ["gateway"]
    assert server_credentials(dispatcher.grpc_tls_cert_file, dispatcher.grpc_tls_key_file) is not None
    assert dispatcher.nats_password.get_secret_value() == nats_env["FLOTILLA_DISPATCHER_NATS_PASSWORD"] != ""
    assert dispatcher.jetstream_replicas == len(nodes) == 3
    assert dispatcher.nats_tls_ca_file and Path(dispatcher.nats_tls_ca_file).is_file()
    assert dispatcher.grpc_host == "0.0.0.0"

    worker, llm = settings_of("worker", WorkerSettings)
    assert worker.nats_password.get_secret_value() == nats_env["FLOTILLA_WORKER_NATS_PASSWORD"] != ""
    assert worker.nats_tls_ca_file and Path(worker.nats_tls_ca_file).is_file()
    assert llm.backend == "local"
    for settings in (dispatcher, worker):
        urls = settings.nats_url.split(",")
        assert urls == [f"nats://{node}:4222" for node in nodes], urls  # names the NATS certificate carries

    gateway, _ = settings_of("gateway", GatewaySettings)
    create_app(gateway)  # authenticator, service key, gRPC TLS: what the gateway checks at start
    assert service_verifier(dispatcher).verify(service_signer(gateway).token()) == "gateway"
    assert gateway.dispatcher_address == "dispatcher:50051" and gateway.host == "0.0.0.0"
    assert gateway.dispatcher_tls_ca_file and Path(gateway.dispatcher_tls_ca_file).is_file()
    assert gateway.api_keys_file is not None
    keys = parse_api_keys(Path(gateway.api_keys_file).read_text(), source="api-keys.json")

    ui, _ = settings_of("ui", UiSettings)
    assert ui.gateway_grpc_address == f"gateway:{gateway.grpc_port}"
    assert ui.gateway_tls_ca_file and Path(ui.gateway_tls_ca_file).is_file()
    (ui_key,) = [k for k in keys if k.sha256 == hash_key(ui.gateway_api_key.get_secret_value())]
    assert ui_key.scopes == {SCOPE_ACT_AS}  # the UI acts for people and nothing else

    # Each client's CA vouches for its server under the name the client dials.
    secrets = {s: _secret_data(objects, f"flotilla-{s}") for s in SERVICES}
    dialled = {"nats": nodes, "dispatcher": [gateway.dispatcher_address], "gateway": [ui.gateway_grpc_address]}
    for server, addresses in dialled.items():
        for client in {"nats": ("dispatcher", "worker"), "dispatcher": ("gateway",), "gateway": ("ui",)}[server]:
            for address in addresses:
                _assert_certified(secrets[server]["tls.crt"], secrets[client]["ca.crt"], address.split(":")[0])
    # The servers' TLS keys are the ones the credentials made for them (each its own).
    assert len({secrets[s]["tls.key"] for s in ("nats", "dispatcher", "gateway")}) == 3
    assert len({secrets[s]["ca.crt"] for s in SERVICES}) == 1


def _assert_certified(cert_pem: bytes, ca_pem: bytes, host: str) -> None:
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    wildcard = "*." + host.partition(".")[2]
    assert host in dns or ("." in host and wildcard in dns), f"{host} is not among {dns}"


def test_each_service_has_its_own_secret_holding_only_what_it_uses(first_run: tuple[list[Object], Path]) -> None:
    objects, overlay = first_run
    used: dict[str, set[str]] = {}
    for workload, pod in pod_specs(objects):
        service = workload["metadata"]["name"]
        refs: set[tuple[str, str]] = set()
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["items"], f"{service} mounts a whole Secret"
                refs |= {(volume["secret"]["secretName"], item["key"]) for item in volume["secret"]["items"]}
        for container in pod["containers"]:
            assert "envFrom" not in container
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
        assert {name for name, _ in refs} == {f"flotilla-{service}"}, f"{service} uses another service's Secret"
        used[f"flotilla-{service}"] = {key for _, key in refs}
    generated = {o["metadata"]["name"]: set(o["data"]) for o in objects if o["kind"] == "Secret"}
    assert set(generated) == set(used) == {f"flotilla-{s}" for s in SERVICES}
    for name, keys in generated.items():
        optional = {"users.json"} if name == "flotilla-ui" else set()
        assert keys == used[name] - optional, f"{name} holds {keys - used[name]} unused, lacks {used[name] - keys}"
    # Private keys only where they are used; the worker's Secret holds nothing that signs or serves.
    assert generated["flotilla-worker"] == {"ca.crt", "nats-password", "metrics-token"}
    assert "service.key" in generated["flotilla-gateway"] and "operator-nats-password" in generated["flotilla-nats"]
    # The Secrets come from the files flotilla.credentials writes, as it lays them out.
    creds = overlay / "credentials"
    assert (
        _secret_data(objects, "flotilla-dispatcher")["gateway.pub"]
        == (creds / "dispatcher" / "trusted" / "gateway.pub").read_bytes()
    )
    other = {
        r["spec"]["tls"][0]["secretName"] for r in objects if r["kind"] == "Ingress" and r["spec"].get("tls")
    }  # fmt: skip
    assert other == EXTERNAL_SECRETS


# -- NetworkPolicies ------------------------------------------------------------------------------

Pod = tuple[str, dict[str, str]]  # (namespace, labels)
EXTERNAL: dict[str, tuple[Pod, list[tuple[int, str]]]] = {
    "ingress": (("ingress-nginx", {NAME_LABEL: "ingress-nginx"}), [(80, "TCP"), (443, "TCP")]),
    "keda": (("keda", {"app": "keda-operator"}), [(8080, "TCP")]),
    "prometheus": (("monitoring", {NAME_LABEL: "prometheus"}), [(9090, "TCP")]),
    "dns": (("kube-system", {"k8s-app": "kube-dns"}), [(53, "UDP"), (53, "TCP")]),
    "elsewhere": (("default", {NAME_LABEL: "something"}), [(80, "TCP")]),
    "stranger": ((NAMESPACE, {NAME_LABEL: "debug-shell"}), [(8080, "TCP")]),
}
"""Pods that are not Flotilla's, with ports they listen on: the ingress controller, KEDA's
operator, Prometheus, the cluster DNS, a pod in another namespace, one run by hand in Flotilla's."""


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    assert "matchExpressions" not in (selector or {}), "the evaluator handles matchLabels only"
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def _peer_matches(peer: dict[str, Any], policy_ns: str, pod: Pod) -> bool:
    assert "ipBlock" not in peer, "an ipBlock lets traffic in or out by address: not in the trust model"
    namespace, labels = pod
    if "namespaceSelector" in peer:
        in_namespace = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        in_namespace = namespace == policy_ns
    return in_namespace and _selects(peer.get("podSelector"), labels)


def _allowed(policies: list[Object], direction: str, subject: Pod, peer: Pod, port: int, protocol: str) -> bool:
    """Whether `subject`'s policies let traffic in from (Ingress) or out to (Egress) `peer`."""
    if subject[0] != NAMESPACE:
        return True  # another namespace's pods: their policies are not ours to check
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p for p in policies if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], subject[1])
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(peer_rule, NAMESPACE, peer) for peer_rule in peers):
                continue
            ports = rule.get("ports")
            if not ports or any(
                int(p["port"]) == port and p.get("protocol", "TCP") == protocol and "endPort" not in p for p in ports
            ):
                return True
    return False


def _edges(objects: list[Object]) -> tuple[set[tuple[str, str, int, str]], int]:
    """Every (from, to, port, protocol) the policies let through, among Flotilla's pods and the
    others above; and how many such tuples were tried."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods: dict[str, tuple[Pod, list[tuple[int, str]]]] = dict(EXTERNAL)
    for workload, pod in pod_specs(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        ports = [(int(p["containerPort"]), p.get("protocol", "TCP")) for c in pod["containers"] for p in c["ports"]]
        pods[workload["metadata"]["name"]] = ((NAMESPACE, labels), ports)
    edges, tried = set(), 0
    for source, (source_pod, _) in pods.items():
        for target, (target_pod, ports) in pods.items():
            if source_pod[0] != NAMESPACE and target_pod[0] != NAMESPACE:
                continue
            for port, protocol in ports:
                tried += 1
                if _allowed(policies, "Egress", source_pod, target_pod, port, protocol) and _allowed(
                    policies, "Ingress", target_pod, source_pod, port, protocol
                ):
                    edges.add((source, target, port, protocol))
    return edges, tried


def test_network_policies_allow_exactly_the_trust_model(base: list[Object]) -> None:
    edges, tried = _edges(base)
    ours = [*SERVICES, "stranger"]
    expected = {
        ("dispatcher", "nats", 4222, "TCP"),
        ("worker", "nats", 4222, "TCP"),
        ("nats", "nats", 6222, "TCP"),
        ("keda", "nats", 8222, "TCP"),
        ("gateway", "dispatcher", 50051, "TCP"),
        ("ui", "gateway", 50052, "TCP"),
        ("ingress", "gateway", 8000, "TCP"),
        ("ingress", "ui", 8888, "TCP"),
        *(("prometheus", service, 9090, "TCP") for service in ("dispatcher", "worker", "ui")),
        ("prometheus", "gateway", 8000, "TCP"),
        *((pod, "dns", 53, protocol) for pod in ours for protocol in ("UDP", "TCP")),
    }
    assert edges == expected, f"allowed but not in the trust model: {edges - expected}; missing: {expected - edges}"
    print(f"{len(edges)} edges allowed of {tried} (from, to, port) tried")
    # The evaluation can see a hole: a worker let through to the dispatcher, on both sides.
    hole = json.loads(json.dumps([o for o in base if o["kind"] == "NetworkPolicy"]))
    worker = next(p for p in hole if p["metadata"]["name"] == "worker")
    worker["spec"]["egress"].append({"to": [{"podSelector": {"matchLabels": {NAME_LABEL: "dispatcher"}}}]})
    dispatcher = next(p for p in hole if p["metadata"]["name"] == "dispatcher")
    dispatcher["spec"]["ingress"][0]["from"].append({"podSelector": {"matchLabels": {NAME_LABEL: "worker"}}})
    workloads = [o for o in base if o["kind"] != "NetworkPolicy"]
    assert _edges(workloads + hole)[0] - edges == {("worker", "dispatcher", 50051, "TCP")}
    assert _edges(workloads)[0] > edges  # no policy: everything goes


# -- Images, probes, security ---------------------------------------------------------------------


def _compose_images() -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    # ${VAR:-default} -> default: what compose runs when nothing is overridden.
    default = re.compile(r"\$\{[A-Z_]+:-([^}]*)\}")
    services = compose["services"].items()
    # One-shot jobs with no network (compose's credentials maker; k8s has the first-run overlay) aside.
    return {name: default.sub(r"\1", s["image"]) for name, s in services if s.get("network_mode") != "none"}


def test_images_are_composes(base: list[Object]) -> None:
    images = {w["metadata"]["name"]: spec["containers"][0]["image"] for w, spec in pod_specs(base)}
    assert images == _compose_images() == {s: f"flotilla/{s}:local" for s in SERVICES}
    assert all(len(spec["containers"]) == 1 for _, spec in pod_specs(base))


def test_probes_resources_and_security_contexts(base: list[Object]) -> None:
    for workload, pod in pod_specs(base):
        name = workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, name
        ports = {p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in container, f"{name} has no {probe}"
            action = container[probe]
            port = (action.get("httpGet") or action.get("tcpSocket") or {}).get("port")
            assert port in ports or "exec" in action, f"{name}: {probe} on a port it does not listen on"
        if name != "nats":  # a read-only root needs somewhere to write temporary files
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name
    env = {v["name"]: v.get("value") for v in _container(base, "worker")["env"]}
    worker = _container(base, "worker")
    health_port = int(env["FLOTILLA_WORKER_HEALTH_PORT"])
    assert worker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": health_port}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": health_port}
    grace = _workload(base, "worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(env["FLOTILLA_WORKER_DRAIN_TIMEOUT_S"]) + 10  # drain, then hand back, before SIGKILL
    rollout = _workload(base, "worker")["spec"]["strategy"]["rollingUpdate"]
    assert rollout == {"maxUnavailable": 0, "maxSurge": 1}
    gateway = _container(base, "gateway")
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_probes_answer_on_a_real_stack() -> None:
    """The dispatcher's exec probe (gRPC health over TLS) and the gateway's HTTP probes, run
    against a local stack with TLS on, the mounted paths pointing at its credentials."""
    from support import local_stack

    objects = render(BASE)
    probe = _container(objects, "dispatcher")["readinessProbe"]["exec"]["command"]
    gateway = _container(objects, "gateway")
    with local_stack(workers=0) as stack:
        code = probe[2].replace("/etc/flotilla/tls/ca.crt", str(stack.credentials.ca_file))
        code = code.replace("127.0.0.1:50051", stack.dispatcher_address)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        for name in ("livenessProbe", "readinessProbe"):
            path = gateway[name]["httpGet"]["path"]
            with urllib.request.urlopen(f"{stack.gateway_url}{path}", timeout=5) as response:  # noqa: S310
                assert response.status == 200
        assert stack.dispatcher is not None
        stack.dispatcher.stop()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert done.returncode != 0  # the probe can fail


# -- NATS and the autoscaler ----------------------------------------------------------------------


def test_the_nats_config_is_the_repositorys_plus_the_cluster(base: list[Object]) -> None:
    config = _named(base, "ConfigMap", "nats-config")["data"]
    assert (
        config["nats-server.conf"] == (ROOT / "nats-server.conf").read_text()
    ), "k8s/base/nats/nats-server.conf must be a copy of the repository's: cp nats-server.conf k8s/base/nats/"
    statefulset = _workload(base, "nats")
    assert statefulset["spec"]["replicas"] == 3 and statefulset["spec"]["podManagementPolicy"] == "Parallel"
    service = statefulset["spec"]["serviceName"]
    assert _named(base, "Service", service)["spec"]["clusterIP"] == "None"
    routes = re.findall(r"nats-route://([a-z0-9.-]+):6222", config["cluster.conf"])
    assert routes == [f"nats-{i}.{service}" for i in range(3)]
    # KEDA names a node by its route URL's first label and looks for it under the Service.
    assert [route.split(".")[0] for route in routes] == [f"{statefulset['metadata']['name']}-{i}" for i in range(3)]
    assert re.search(r"(?m)^\s*no_advertise: true$", config["cluster.conf"])
    assert "include ./nats-server.conf" in config["cluster.conf"]
    args = _container(base, "nats")["args"]
    assert args[args.index("--name") + 1] == "$(POD_NAME)"  # KEDA finds a consumer's leader by node name


def _scaler(objects: list[Object]) -> dict[str, str]:
    scaled = _named(objects, "ScaledObject", "worker")
    assert scaled["spec"]["scaleTargetRef"] == {"name": "worker"}
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    return dict(trigger["metadata"])


def test_the_scaler_watches_the_workers_consumer(base: list[Object]) -> None:
    scaler = _scaler(base)
    assert (scaler["stream"], scaler["consumer"]) == (JOBS_STREAM, WORKERS_CONSUMER)
    assert re.search(rf"(?m)^\s*{scaler['account']} \{{\s*$", (ROOT / "nats-server.conf").read_text())
    service = _workload(base, "nats")["spec"]["serviceName"]
    monitor = next(p["port"] for p in _named(base, "Service", service)["spec"]["ports"] if p["name"] == "monitor")
    assert scaler["natsServerMonitoringEndpoint"] == f"{service}.{NAMESPACE}.svc.cluster.local:{monitor}"
    assert "replicas" not in _workload(base, "worker")["spec"]  # the autoscaler's alone
    pdb = _named(base, "PodDisruptionBudget", "worker")
    assert pdb["spec"]["selector"]["matchLabels"] == _workload(base, "worker")["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1


def _node_config(conf: str, credentials: Path, index: int, routes: list[int]) -> str:
    """cluster.conf for node `index` of a cluster on 127.0.0.1: the Secret's mount path and the
    route ports replaced, nothing else."""
    conf = conf.replace("/etc/nats/tls/tls.crt", str(credentials / "nats" / "tls.crt"))
    conf = conf.replace("/etc/nats/tls/tls.key", str(credentials / "nats" / "tls.key"))
    conf = conf.replace("/etc/nats/tls/ca.crt", str(credentials / "ca.crt"))
    conf = conf.replace("0.0.0.0:6222", f"127.0.0.1:{routes[index]}")
    return re.sub(r"nats-(\d)\.nats:6222", lambda m: f"localhost:{routes[int(m.group(1))]}", conf)


def test_the_nats_cluster_forms_over_tls_and_serves_the_scalers_numbers(base: list[Object], tmp_path: Path) -> None:
    """Three nats-servers from the k8s config (mutual TLS routes with the credentials' nats
    certificate) form a cluster; with the layout provisioned at R3 and jobs queued, the consumer
    leader's /jsz answers what KEDA's scaler reads: the workers' consumer and its pending count."""
    config = _named(base, "ConfigMap", "nats-config")["data"]
    credentials = write_credentials(tmp_path / "credentials", hosts=["localhost", "127.0.0.1"]).root
    passwords = {u: f"pw{u}{os.getpid()}" for u in ("dispatcher", "worker", "operator")}
    env = {**os.environ, **{f"FLOTILLA_{u.upper()}_NATS_PASSWORD": p for u, p in passwords.items()}}
    routes = [free_port() for _ in range(3)]
    clients = [free_port() for _ in range(3)]
    monitors = [free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        folder = tmp_path / f"nats-{i}"
        folder.mkdir()
        (folder / "nats-server.conf").write_text(config["nats-server.conf"])
        (folder / "cluster.conf").write_text(_node_config(config["cluster.conf"], credentials, i, routes))
        argv = [find_nats_server(), "-c", str(folder / "cluster.conf"), "--name", f"nats-{i}", "-a", "127.0.0.1",
                "-p", str(clients[i]), "-m", str(monitors[i]), "-sd", str(folder / "data")]  # fmt: skip
        nodes.append(Child(f"nats-{i}", argv, env, functools.partial(port_open, clients[i]), folder / "log"))
    scaler = _scaler(base)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready(30)

        async def queue_jobs() -> None:
            urls = [f"nats://localhost:{port}" for port in clients]
            tls = ssl.create_default_context(cafile=str(credentials / "ca.crt"))
            nc = await nats.connect(urls, user="dispatcher", password=passwords["dispatcher"], tls=tls,
                                    inbox_prefix="_INBOX_dispatcher")  # fmt: skip
            try:
                js = nc.jetstream()
                deadline = time.monotonic() + 30
                while True:  # the cluster elects its meta leader first
                    try:
                        await provision(js, Layout(replicas=3, store_bytes=10**9))
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.5)
                for n in range(7):
                    await js.publish(job_subject(f"{n:026d}"), b"job")
            finally:
                await nc.close()

        asyncio.run(queue_jobs())
        query = f"/jsz?acc={scaler['account']}&consumers=true&config=true"
        found: dict[str, Any] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not found:
            for i, port in enumerate(monitors):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{query}", timeout=5) as response:  # noqa: S310
                    report = json.load(response)
                for account in report.get("account_details", []):
                    for stream in account.get("stream_detail", []):
                        for consumer in stream.get("consumer_detail") or []:
                            leader = (consumer.get("cluster") or {}).get("leader")
                            if (stream["name"], consumer["name"]) == (scaler["stream"], scaler["consumer"]) and (
                                leader == f"nats-{i}"
                            ):
                                # KEDA's lag: queued jobs plus jobs held (a job is acked when its run ends).
                                lag = consumer["num_pending"] + consumer["num_ack_pending"]
                                found = {"leader": leader, "replicas": len(stream["cluster"].get("replicas", [])) + 1,
                                         "lag": lag}  # fmt: skip
            time.sleep(0.5)
        assert found, "no node reported the workers' consumer as its leader"
        assert found["replicas"] == 3 and found["lag"] == 7, found
        # In a cluster KEDA finds the consumer's leader through /varz: with no advertised client
        # URLs (no_advertise), from the route URLs, whose first label it takes for the node's name
        # (nats-N of nats-N.nats:6222: the pod's name, which is the server's name).
        with urllib.request.urlopen(f"http://127.0.0.1:{monitors[0]}/varz", timeout=5) as response:  # noqa: S310
            varz = json.load(response)
        assert not varz.get("connect_urls") and varz["server_name"] == "nats-0"
        assert varz["cluster"]["urls"] == [f"localhost:{port}" for port in routes]
        print(f"cluster of 3 over TLS; consumer {scaler['stream']}/{scaler['consumer']} led by {found}")
    finally:
        for node in nodes:
            node.stop()
