"""The Containerfile, linted by reading it: no container engine is needed (none runs here).

It must build what the StatefulSet runs: same command, same numeric user, same ports, the
package installed with pip from this checkout, and a base image that is pinned.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.k8s.manifests import REPO, base_objects, container

CONTAINERFILE = REPO / "Containerfile"
IGNORE_FILES = [REPO / ".containerignore", REPO / ".dockerignore"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


def instructions(path: Path = CONTAINERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, value = line.partition(" ")
        out.append(Instruction(keyword.upper(), value.strip()))
    assert not pending, "dangling line continuation"
    return out


def _args() -> dict[str, str]:
    found: dict[str, str] = {}
    for ins in instructions():
        if ins.keyword == "ARG" and "=" in ins.value:
            name, value = ins.value.split("=", 1)
            found[name] = value
    return found


def _exec_form(ins: Instruction) -> list[str]:
    value = json.loads(ins.value)
    assert isinstance(value, list), f"{ins.keyword} must use the exec (JSON) form"
    return [str(v) for v in value]


def _last(keyword: str) -> Instruction:
    found = [i for i in instructions() if i.keyword == keyword]
    assert found, f"no {keyword}"
    return found[-1]


def _final_stage() -> list[Instruction]:
    all_ins = instructions()
    start = max(i for i, ins in enumerate(all_ins) if ins.keyword == "FROM")
    return all_ins[start:]


def test_base_images_are_pinned_and_never_latest() -> None:
    args = _args()
    froms = [i.value.split()[0] for i in instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2, "a build stage keeps pip and sources out of the final image"
    for ref in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert name and tag, f"{image}: no tag"
        assert tag != "latest"
        if "@" not in image:
            assert re.match(r"3\.11(\.\d+)?-slim", tag), f"{image}: not a slim Python 3.11"


def test_final_image_runs_as_the_numeric_user_the_pod_expects() -> None:
    user = _last("USER").value
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {user}: numeric ids let runAsNonRoot verify"
    assert int(uid) != 0
    pod = base_objects().statefulset["spec"]["template"]["spec"]["securityContext"]
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"])
    assert any(i.keyword == "USER" for i in _final_stage())


def test_entrypoint_and_cmd_are_what_the_statefulset_runs() -> None:
    main = container(base_objects().statefulset, "dataflow")
    assert _exec_form(_last("ENTRYPOINT")) == main["command"]
    assert _exec_form(_last("CMD")) == main["args"]
    assert main["args"] == ["python", "-m", "bytewax.run", "flows.confusion"]
    # tini must actually be installed where ENTRYPOINT looks for it.
    runs = " ".join(i.value for i in _final_stage() if i.keyword == "RUN")
    assert "install" in runs and " tini" in runs
    assert _exec_form(_last("ENTRYPOINT"))[0] == "/usr/bin/tini"


def test_the_package_is_installed_with_pip_from_this_checkout() -> None:
    runs = [shlex.split(i.value) for i in instructions() if i.keyword == "RUN"]
    assert any("pip" in " ".join(r) and "install" in r and "." in r for r in runs)
    copies = [
        i.value.split()
        for i in instructions()
        if i.keyword == "COPY" and not i.value.startswith("--from")
    ]
    for sources in (c[:-1] for c in copies):
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_exposed_ports_match_the_pod() -> None:
    exposed = {
        int(p.split("/")[0])
        for i in instructions()
        if i.keyword == "EXPOSE"
        for p in i.value.split()
    }
    ports = {p["containerPort"] for p in container(base_objects().statefulset, "dataflow")["ports"]}
    assert exposed == ports


def test_python_writes_nothing_to_the_read_only_root() -> None:
    env = " ".join(i.value for i in _final_stage() if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env, "logs must not sit in a buffer when the pod is killed"


@pytest.mark.parametrize("path", IGNORE_FILES, ids=lambda p: p.name)
def test_build_context_leaves_local_state_out(path: Path) -> None:
    lines = [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: everything is excluded first"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "flows"}
    copied = {
        s.rstrip("/")
        for i in instructions()
        if i.keyword == "COPY" and not i.value.startswith("--from")
        for s in i.value.split()[:-1]
    }
    assert copied <= allowed, f"COPY of an ignored path: {copied - allowed}"
