"""Renders a kustomization the way `kustomize build` does, for the subset k8s/ uses (resources,
namespace, images, config map and secret generators without name hashes), so the manifests are
checked offline with no kustomize binary. Anything else in a kustomization.yaml is refused, so a
feature this renderer does not know cannot slip through unchecked."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "images",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}

Object = dict[str, Any]


def load_yaml(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[Object]:
    """Every object `kustomize build directory` would print (in resource order)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise ValueError(f"{directory}/kustomization.yaml: fields this renderer does not handle: {sorted(unknown)}")
    objects: list[Object] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        objects += render(path) if path.is_dir() else load_yaml(path)
    generated = spec.get("configMapGenerator", []) + spec.get("secretGenerator", [])
    if generated and not spec.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise ValueError(f"{directory}: generators need disableNameSuffixHash (this renderer adds no hash)")
    for generator in spec.get("configMapGenerator", []):
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                        "data": {k: v.decode() for k, v in _generated(directory, generator).items()}})  # fmt: skip
    for generator in spec.get("secretGenerator", []):
        data = {k: base64.b64encode(v).decode() for k, v in _generated(directory, generator).items()}
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": generator.get("type", "Opaque"),
                        "metadata": {"name": generator["name"]}, "data": data})  # fmt: skip
    namespace = spec.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace
    for image in spec.get("images", []):
        for container in containers(objects):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return objects


def _generated(directory: Path, generator: Object) -> dict[str, bytes]:
    unknown = set(generator) - {"name", "files", "literals", "type"}
    if unknown:
        raise ValueError(f"generator {generator['name']}: fields this renderer does not handle: {sorted(unknown)}")
    data: dict[str, bytes] = {}
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
        path = (directory / source).resolve()
        if not path.is_relative_to(directory.resolve()):  # kustomize's load restrictor
            raise ValueError(f"{entry}: kustomize loads no file outside {directory}")
        data[key] = path.read_bytes()
    for entry in generator.get("literals", []):
        key, _, value = entry.partition("=")
        data[key] = value.encode()
    return data


def pod_specs(objects: list[Object]) -> list[tuple[Object, Object]]:
    """(workload, its pod spec) for every Deployment, StatefulSet, DaemonSet and Job."""
    return [
        (obj, obj["spec"]["template"]["spec"])
        for obj in objects
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def containers(objects: list[Object]) -> list[Object]:
    return [c for _, spec in pod_specs(objects) for c in spec.get("initContainers", []) + spec["containers"]]
