"""Build the image once per test session, through ``scripts/image build`` (as a user would).

The build is cached (base root filesystem, then buildah's or Docker's layers), so a rebuild of
an unchanged checkout costs seconds, and a changed ``flows/`` is always what gets tested.
A build that fails, or a missing engine, fails the tests that need the image: never a skip.
"""

from __future__ import annotations

import functools
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.image.engine import ImageConfig, detect, image_config, image_size
from tests.k8s.manifests import REPO

BUILD_TIMEOUT_S = 1200  # a cold build on a fresh machine: debootstrap + pip, minutes


@dataclass(frozen=True)
class BuiltImage:
    """The image under test and how it was made."""

    ref: str  # the tag, as the manifests name the image
    id: str  # what the tests run: a concurrent build elsewhere may move the tag
    build_engine: str
    run_engine: str
    config: ImageConfig
    size_bytes: int
    build_s: float
    base_s: float
    base: str

    def describe(self) -> str:
        return (
            f"image {self.ref} ({self.id[:12]}): {self.size_bytes / 1e6:.0f} MB, built with "
            f"{self.build_engine} in {self.build_s:.0f} s (base {self.base}: "
            f"{self.base_s:.0f} s of it), run with {self.run_engine}"
        )


REPORT: list[str] = []


@functools.cache
def _build() -> BuiltImage | str:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "image"), "build"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"scripts/image build took over {BUILD_TIMEOUT_S} s"
    if done.returncode != 0:
        return f"scripts/image build failed (exit {done.returncode}):\n{done.stderr[-6000:]}"
    fields = dict(item.split("=", 1) for item in done.stdout.strip().splitlines()[-1].split())
    ref, image_id = fields["image"], fields["id"].removeprefix("sha256:")
    engine = detect(image_id)
    built = BuiltImage(
        ref,
        image_id,
        fields["engine"],
        engine,
        image_config(engine, image_id),
        image_size(engine, image_id),
        time.monotonic() - started,
        float(fields["base_s"]),
        fields["base"],
    )
    REPORT.append(built.describe())
    return built


def built_image() -> BuiltImage:
    """The image of this checkout, built now (or taken from the build cache)."""
    built = _build()
    if isinstance(built, str):
        pytest.fail(built, pytrace=False)
    return built
