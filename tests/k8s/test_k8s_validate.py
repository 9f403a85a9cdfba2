"""Every manifest is a valid object for current Kubernetes, checked strictly (unknown fields fail).

Uses kubernetes-validate's bundled OpenAPI schemas: no cluster, no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.k8s.manifests import (
    BASE,
    K8S,
    KUSTOMIZATION,
    OVERLAYS,
    Objects,
    kustomization,
    load_yaml,
    manifest_files,
    patch_files,
)

# The oldest minor still in upstream support when this was written, and the newest bundled.
VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]


def _validate(obj: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        pytest.fail(
            f"{obj['kind']} {obj['metadata'].get('name')} (Kubernetes {version}): "
            f"{where}: {exc.message}",
            pytrace=False,
        )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_strictly_valid(path: Path, version: str) -> None:
    docs = load_yaml(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        _validate(doc, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_deployment_is_strictly_valid(deployment: Objects, version: str) -> None:
    for obj in deployment.items:
        _validate(obj, version)


def test_base_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    listed = set(kustomization(BASE)["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {KUSTOMIZATION}
    assert listed <= present, f"listed but missing: {listed - present}"
    # The Secret template must stay out: applying placeholders would overwrite real credentials.
    assert present - listed == {"secret.example.yaml"}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_patches_target_objects_and_containers_of_the_base(overlay: Path) -> None:
    """Without kustomize, at least make sure each patch would land on something."""
    base = {
        (o["kind"], o["metadata"]["name"]): o
        for path in (BASE / r for r in kustomization(BASE)["resources"])
        for o in load_yaml(path)
    }
    patches = [p for p in patch_files() if p.parent == overlay.resolve()]
    assert patches, f"{overlay} has no patches"
    for path in patches:
        for patch in load_yaml(path):
            key = (patch["kind"], patch["metadata"]["name"])
            assert key in base, f"{path.name}: patches {key}, which the base does not have"
            if patch["kind"] == "StatefulSet":
                names = {c["name"] for c in base[key]["spec"]["template"]["spec"]["containers"]}
                for c in (
                    patch.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
                ):
                    # A strategic-merge patch with an unknown name would ADD a container.
                    assert c["name"] in names, f"{path.name}: no container {c['name']!r}"
