"""Reading the Kubernetes manifests under ``k8s/`` the way the cluster would, without a cluster.

`base_objects` reads the base's files one by one (no kustomize needed); `render` runs
``kustomize build`` (or ``kubectl kustomize``) when one is installed, for the overlays.
`pod_env` resolves a container's environment as the kubelet does: ``envFrom`` first, then
``env`` on top, ``$(VAR)`` references expanded, downward-API fields filled in for one pod.
"""

from __future__ import annotations

import base64
import copy
import functools
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
BASE = K8S / "base"
OVERLAYS = (
    sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
    if (K8S / "overlays").is_dir()
    else []
)
KUSTOMIZATION = "kustomization.yaml"

Obj = dict[str, Any]


def load_yaml(path: Path) -> list[Obj]:
    """Every document of a YAML file (empty documents dropped)."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def kustomization(directory: Path) -> Obj:
    docs = load_yaml(directory / KUSTOMIZATION)
    assert len(docs) == 1, f"{directory / KUSTOMIZATION}: expected one document"
    return docs[0]


def patch_files() -> set[Path]:
    """Files that kustomizations use as patches: partial objects, not manifests of their own."""
    files: set[Path] = set()
    for path in K8S.rglob(KUSTOMIZATION):
        for patch in kustomization(path.parent).get("patches", []):
            if "path" in patch:
                files.add((path.parent / patch["path"]).resolve())
    return files


def manifest_files() -> list[Path]:
    """Every YAML file under k8s/ that is a complete Kubernetes object."""
    patches = patch_files()
    return sorted(
        p for p in K8S.rglob("*.yaml") if p.name != KUSTOMIZATION and p.resolve() not in patches
    )


@dataclass(frozen=True)
class Objects:
    """A set of objects by kind and name, as one variant of the deployment holds them."""

    name: str
    items: list[Obj]

    def get(self, kind: str, name: str | None = None) -> Obj:
        found = [
            o
            for o in self.items
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.items if o["kind"] == kind]

    @property
    def statefulset(self) -> Obj:
        return self.get("StatefulSet")

    @property
    def configmap(self) -> Obj:
        return self.get("ConfigMap")


def base_objects(with_secret_example: bool = True) -> Objects:
    """The base's objects, read file by file (what ``kustomize build k8s/base`` would list)."""
    files = [BASE / r for r in kustomization(BASE)["resources"]]
    if with_secret_example:
        files.append(BASE / "secret.example.yaml")
    return Objects("base", [doc for path in files for doc in load_yaml(path)])


@functools.cache
def kustomize_command() -> list[str] | None:
    """``kustomize build`` or ``kubectl kustomize``, whichever is installed; None if neither."""
    if exe := shutil.which("kustomize"):
        return [exe, "build"]
    if exe := shutil.which("kubectl"):
        probe = subprocess.run([exe, "kustomize", "--help"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [exe, "kustomize"]
    return None


def render(directory: Path) -> Objects:
    command = kustomize_command()
    assert command is not None
    out = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return Objects(str(directory.relative_to(K8S)), [doc for doc in yaml.safe_load_all(out) if doc])


def containers(sts: Obj) -> list[Obj]:
    spec = sts["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(sts: Obj, name: str) -> Obj:
    found = [c for c in containers(sts) if c["name"] == name]
    assert len(found) == 1, f"no container {name!r}"
    return found[0]


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: Mapping[str, str]) -> str:
    # Kubernetes expands $(VAR) from variables defined before; unknown references stay as is.
    return _REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def secret_data(objects: Objects, name: str) -> dict[str, str]:
    """A Secret's values in clear (``stringData`` and decoded ``data``); empty if absent."""
    for secret in objects.all("Secret"):
        if secret["metadata"]["name"] == name:
            data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
            data.update(secret.get("stringData", {}))
            return data
    return {}


def pod_env(
    c: Obj,
    objects: Objects,
    *,
    pod_name: str,
    namespace: str,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """The environment the kubelet gives container ``c`` of pod ``pod_name``.

    Secrets come from ``secrets`` (name -> data) when given, else from the objects' Secrets
    (``stringData``); a missing optional source is skipped like the kubelet does.
    """
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            data = objects.get("ConfigMap", source["configMapRef"]["name"]).get("data", {})
        else:
            name = source["secretRef"]["name"]
            data = (
                dict(secrets.get(name, {})) if secrets is not None else secret_data(objects, name)
            )
        env.update({source.get("prefix", "") + k: str(v) for k, v in data.items()})
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = _expand(str(var["value"]), env)
        else:
            ref = var["valueFrom"]
            assert "fieldRef" in ref, f"unsupported valueFrom in {var}"
            env[var["name"]] = fields[ref["fieldRef"]["fieldPath"]]
    return env


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (``512Mi``, ``1Gi``, ``500m``, ``2``) as a plain number."""
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "m": 1e-3,
    }
    s = str(text)
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * factor
    return float(s)


def mounts_of(c: Obj) -> dict[str, Obj]:
    """Mount path -> volumeMount."""
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


def volume_for(path: str, c: Obj, sts: Obj) -> tuple[str, Obj] | None:
    """The mount path and volume that hold ``path`` in container ``c`` (deepest mount wins)."""
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"].get("volumes", [])}
    best: tuple[str, Obj] | None = None
    for mount_path, mount in mounts_of(c).items():
        if (path == mount_path or path.startswith(mount_path.rstrip("/") + "/")) and (
            best is None or len(mount_path) > len(best[0])
        ):
            best = (mount_path, volumes[mount["name"]])
    return best


def variants() -> Iterable[str]:
    """Names of the deployments under test: the base, and each overlay."""
    yield "base"
    for overlay in OVERLAYS:
        yield str(overlay.relative_to(K8S))


def objects_of(variant: str) -> Objects:
    """The objects of a variant: base from its files, overlays rendered (needs kustomize).

    Rendered once per session; each caller gets its own copy to read.
    """
    return copy.deepcopy(_objects_of(variant))


@functools.cache
def _objects_of(variant: str) -> Objects:
    if variant == "base":
        return base_objects()
    return render(K8S / variant)
