"""Fixtures for the manifest tests: one run per deployment variant (base, each overlay)."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import Objects, kustomize_command, objects_of, variants


@pytest.fixture(params=list(variants()))
def deployment(request: pytest.FixtureRequest) -> Objects:
    """The objects of one variant; overlays need a kustomize binary to be rendered."""
    variant: str = request.param
    if variant != "base" and kustomize_command() is None:
        pytest.skip(
            f"rendering {variant} needs `kustomize` or `kubectl kustomize`; its patch "
            "files are still checked against the base"
        )
    return objects_of(variant)
