"""The built image, run: what a user's first ``docker run`` and the StatefulSet's pod get.

The image is built from this checkout by ``scripts/image build`` and run with the engine that
works here (see `tests.image.engine`). What the pod gives the container is read from the
manifests (`tests.k8s.manifests`): the dataflow container's command, user and volume mounts.
The demo's documents are checked against the independent oracle (`tests.reference`), not
against another run of the job.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.demo import START_MS, STEP_MS, demo_lines
from flows.settings import Settings, load_settings
from tests.image.build import BuiltImage, built_image
from tests.image.engine import Container, Mount
from tests.image.pod import make_volumes, mounts, pod_spec
from tests.k8s.manifests import Obj, base_objects, container
from tests.reference import ExpectedRun, compare, expected_run

DEMO_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return built_image()


@pytest.fixture(scope="module")
def statefulset() -> Obj:
    return base_objects().statefulset


@pytest.fixture(scope="module")
def image_settings(image: BuiltImage) -> Settings:
    """The settings the image's default command runs with: its ENV over the job's defaults."""
    return load_settings({k: v for k, v in image.config.env.items() if k.startswith("CONFUSION_")})


@pytest.fixture(scope="module")
def demo_expected(image_settings: Settings) -> ExpectedRun:
    s = image_settings
    lines = demo_lines(s.demo_seed, s.demo_records)
    return expected_run(
        lines,
        window_size=s.window_size,
        emit_every=s.emit_every,
        fallback_ts=[START_MS + i * STEP_MS for i in range(len(lines))],
        engine="exact",
    )


@pytest.fixture
def containers(image: BuiltImage) -> Iterator[list[Container]]:
    made: list[Container] = []
    yield made
    for c in made:
        c.remove()


def new_container(
    image: BuiltImage, made: list[Container], mounts_: list[Mount], read_only: bool
) -> Container:
    c = Container(image.run_engine, image.id, image.config, mounts_, read_only)
    made.append(c)
    return c


def documents(stdout: bytes) -> list[dict[str, object]]:
    """The window documents the console sink printed (alert documents share the console)."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [doc for doc in lines if "alert_id" not in doc]


def test_image_is_what_the_statefulset_runs(image: BuiltImage, statefulset: Obj) -> None:
    main = container(statefulset, "dataflow")
    for c in pod_spec(statefulset)["initContainers"] + pod_spec(statefulset)["containers"]:
        assert image.ref.removeprefix("localhost/") == c["image"], c["name"]
    assert image.config.command == [*main["command"], *main["args"]]
    security = pod_spec(statefulset)["securityContext"]
    assert image.config.user == f"{security['runAsUser']}:{security['runAsGroup']}"
    print(image.describe())


def test_default_command_with_nothing_mounted(
    image: BuiltImage,
    containers: list[Container],
    image_settings: Settings,
    demo_expected: ExpectedRun,
) -> None:
    """A plain ``docker run confusion-stream``: the demo runs to the end as uid 10001 in the
    root-owned /app, documents on the console, dead letters in /tmp; nothing else written."""
    c = new_container(image, containers, [], read_only=False)
    c.start(None, {})
    code, out, err = c.wait(DEMO_TIMEOUT_S)
    assert code == 0, err.decode(errors="replace")[-3000:]
    assert image_settings.sink == "console"
    problems = compare(documents(out), demo_expected.documents)
    assert not problems, "\n".join(problems)
    letters = c.read(str(image_settings.dead_letter_path)).splitlines()
    assert len(letters) == len(demo_expected.rejections) > 0
    written = c.written()
    outside = [p for p in written if p != "/tmp" and not p.startswith("/tmp/")]
    assert not outside, f"written outside /tmp: {outside}"


def test_default_command_in_the_pods_read_only_root(
    image: BuiltImage,
    containers: list[Container],
    statefulset: Obj,
    image_settings: Settings,
    demo_expected: ExpectedRun,
    tmp_path: Path,
) -> None:
    """The pod's shape with the image's defaults: read-only root, only the dataflow
    container's volumes writable (as mounted by the StatefulSet), the demo to the end."""
    main = container(statefulset, "dataflow")
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = make_volumes(statefulset, tmp_path)
    c = new_container(image, containers, mounts(main, volumes), read_only=True)
    c.start(None, {})
    code, out, err = c.wait(DEMO_TIMEOUT_S)
    assert code == 0, err.decode(errors="replace")[-3000:]
    problems = compare(documents(out), demo_expected.documents)
    assert not problems, "\n".join(problems)
    # The dead letters are on the pod's /tmp volume.
    tmp_volume = next(m.source for m in c.mounts if m.target == "/tmp")
    dead = tmp_volume / image_settings.dead_letter_path.relative_to("/tmp")
    assert len(dead.read_bytes().splitlines()) == len(demo_expected.rejections)
    assert c.written() == []
    if c.run_dir is not None:  # buildah: /run stood in for the image's; only mount points
        inside = sorted(str(p.relative_to(c.run_dir)) for p in c.run_dir.rglob("*"))
        assert inside == ["confusion"], inside


def test_the_jsonl_sink_writes_documents_and_alerts_under_tmp(
    image: BuiltImage,
    containers: list[Container],
    statefulset: Obj,
    image_settings: Settings,
    demo_expected: ExpectedRun,
    tmp_path: Path,
) -> None:
    """``CONFUSION_SINK=jsonl`` in the pod's read-only shape: every file the job writes (window
    documents, alerts, dead letters) lands under /tmp by the image's defaults, none in /app."""
    main = container(statefulset, "dataflow")
    volumes = make_volumes(statefulset, tmp_path)
    c = new_container(image, containers, mounts(main, volumes), read_only=True)
    c.start(None, {"CONFUSION_SINK": "jsonl"})
    code, _, err = c.wait(DEMO_TIMEOUT_S)
    assert code == 0, err.decode(errors="replace")[-3000:]
    tmp_volume = next(m.source for m in c.mounts if m.target == "/tmp")
    s = image_settings
    for path in (s.output, s.alerts_output, s.dead_letter_path):
        assert path.is_relative_to("/tmp"), path
    written = tmp_volume / s.output.relative_to("/tmp")
    docs = [json.loads(line) for line in written.read_bytes().splitlines()]
    problems = compare(docs, demo_expected.documents)
    assert not problems, "\n".join(problems)
    alerts = tmp_volume / s.alerts_output.relative_to("/tmp")
    fired = [json.loads(line) for line in alerts.read_bytes().splitlines()]
    assert fired and all(a["alert_id"] for a in fired)  # the demo's model2 degrades
    assert c.written() == []


def test_root_and_app_are_read_only_for_the_job(
    image: BuiltImage, containers: list[Container], statefulset: Obj, tmp_path: Path
) -> None:
    main = container(statefulset, "dataflow")
    c = new_container(
        image, containers, mounts(main, make_volumes(statefulset, tmp_path)), read_only=True
    )
    c.start(["python", "-c", "import time; time.sleep(60)"], {})
    script = (
        "import os, sys\n"
        "for path in ('/app/x', '/x', '/opt/venv/x', '/tmp/x', '/run/confusion/x',"
        " '/var/lib/confusion/x', '/etc/bytewax/x'):\n"
        "    try:\n"
        "        open(path, 'w').close(); print(path, 'ok')\n"
        "    except OSError as e:\n"
        "        print(path, type(e).__name__)\n"
        "print('uid', os.getuid(), os.getgid(), os.getcwd())\n"
    )
    done = c.exec(["python", "-c", script], {})
    assert done.returncode == 0, done.stderr
    seen = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert seen.pop("uid") == "10001 10001 /app"
    writable = {path for path, result in seen.items() if result == "ok"}
    expected = {f"{m['mountPath']}/x" for m in main["volumeMounts"] if not m.get("readOnly")}
    assert writable == expected, seen


def test_a_bad_setting_stops_the_job_with_exit_2(
    image: BuiltImage, containers: list[Container]
) -> None:
    c = new_container(image, containers, [], read_only=False)
    c.start(None, {"CONFUSION_WINDOW_SIZE": "0"})
    code, _, err = c.wait(120)
    assert code == 2, err
    assert b"CONFUSION_WINDOW_SIZE" in err


def _pem_blocks(text: str) -> set[str]:
    blocks = text.split("-----BEGIN CERTIFICATE-----")[1:]
    return {"".join(b.split("-----END CERTIFICATE-----")[0].split()) for b in blocks}


def test_the_build_secret_is_not_in_the_image(
    image: BuiltImage, containers: list[Container]
) -> None:
    """The CA bundle pip trusted during the build (the `pip-ca` build secret) left no trace:
    no certificate of the host's bundle that Debian's own bundle lacks (a TLS-intercepting
    proxy's CA) is in any file of the image."""
    done = subprocess.run(
        [str(Path(__file__).parents[2] / "scripts" / "image"), "ca-bundle"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    bundle = Path(done.stdout.strip())
    assert bundle.is_file(), "scripts/image found no CA bundle on this host"
    c = new_container(image, containers, [], read_only=False)
    c.start(["python", "-c", "import time; time.sleep(300)"], {}, user="0:0")
    own = c.exec(["cat", "/etc/ssl/certs/ca-certificates.crt"], {})
    assert own.returncode == 0, own.stderr
    extra = _pem_blocks(bundle.read_text()) - _pem_blocks(own.stdout)
    # A distinctive piece of each extra certificate: 64 base64 characters from its middle.
    needles = sorted({block[len(block) // 2 : len(block) // 2 + 64] for block in extra})
    print(f"{len(extra)} certificates in {bundle} that Debian's bundle lacks")
    found = c.exec(["python", "-c", _FIND, *needles], {}, timeout=300)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [], f"the build secret left copies: {found.stdout}"


_FIND = """
import os, sys
needles = [n.encode() for n in sys.argv[1:]]
assert not os.path.exists('/run/secrets/pip-ca'), '/run/secrets/pip-ca is in the image'
for top in ('/bin', '/etc', '/home', '/opt', '/root', '/run', '/srv', '/usr', '/var', '/tmp'):
    for base, _, files in os.walk(top):
        for name in files:
            path = os.path.join(base, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 8_000_000:
                    continue
                with open(path, 'rb') as f:
                    data = b''.join(f.read().split())
            except OSError:
                continue
            if any(n in data for n in needles):
                print(path)
"""
