"""The StatefulSet's pods as containers of the built image, on the real Kafka and Elasticsearch.

What `test_k8s_contract.py` plays with local processes, here runs inside the image that
``scripts/image build`` made from this checkout: each pod's init container and job container
are containers of that image with a read-only root, as uid 10001, with exactly the volume
mounts the manifests give them (host directories: per-pod emptyDirs, one shared recovery
volume), the environment the kubelet would build from the manifests (`pod_env`), the job's
command line and the probes' command lines read from the StatefulSet (tini included).

The only differences from a cluster, each asserted below: the brokers, Elasticsearch, topic,
index and group (loopback servers, fresh names); the peer address (127.0.1.<ordinal>, one port;
the pods share the host's network); a Prometheus port per pod (same reason); the Secret left
out (the loopback servers need no credentials); with buildah, the probes get ``--since-pid``
with the container's first process, since chroot isolation has no PID namespace.

The run: two pods start (pod 0 alone first: it cannot poll before its peer is there, so its
startup probe must fail), work through the first records and pass every probe; after a
snapshot more records arrive and pod 1 is SIGKILLed; pod 0 fails without its peer. Both
restart as new containers on the same volumes, resume from the checkpoint, and the
Elasticsearch documents equal the oracle's; SIGTERM to PID 1 (tini) then stops each job
within the grace period.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from elasticsearch import Elasticsearch

from flows.settings import load_settings
from tests.image.build import BuiltImage, built_image
from tests.image.engine import Container
from tests.image.pod import make_volumes, mounts, pod_spec
from tests.integration.pipeline import all_docs, count, produce, read_topic
from tests.k8s.loopback import PEER_HOST, free_port, recovery_log, wait_for
from tests.k8s.manifests import Obj, base_objects, container, pod_env
from tests.reference import compare, expected_run

PARTITIONS = 2  # = replicas x workers: every pod reads (and beats on) one partition
CHUNKS = (3000, 1000, 2000)  # records per partition: before, during and after the crash
BAD_EVERY = 700  # record i with i % BAD_EVERY == BAD_EVERY - 1 is malformed
START_MS = 1_795_341_600_000
CLASSES = ("cat", "dog", "fox")
# The only variables whose value differs from the manifests' (see the module docstring).
LOOPBACK_DIFFERENCES = {
    "CONFUSION_KAFKA_BOOTSTRAP",
    "CONFUSION_ES_URL",
    "CONFUSION_KAFKA_TOPIC",
    "CONFUSION_ES_INDEX",
    "CONFUSION_KAFKA_GROUP",
    "BYTEWAX_PEER_ADDRESS",
    "BYTEWAX_DATAFLOW_API_PORT",
}


def good_records(upto_chunk: int, from_chunk: int = 0) -> int:
    lo, hi = sum(CHUNKS[:from_chunk]), sum(CHUNKS[: upto_chunk + 1])
    return sum(1 for i in range(lo, hi) if i % BAD_EVERY != BAD_EVERY - 1)


def record(partition: int, i: int, rng: random.Random) -> bytes:
    if i % BAD_EVERY == BAD_EVERY - 1:
        return b'{"id": "broken-' + f"{partition}-{i}".encode() + b'", "label": '
    truth = rng.choice(CLASSES)
    guess = truth if rng.random() < 0.8 else rng.choice(CLASSES)
    scores = {c: round(rng.random() * 0.4 + (0.6 if c == guess else 0.0), 4) for c in CLASSES}
    return orjson.dumps(
        {
            "id": f"{partition}-{i:06d}",
            "ts": START_MS + 40 * i,
            "label": truth,
            "predictions": {f"p{partition}-scores": scores, f"p{partition}-labels": guess},
        }
    )


def chunk(index: int) -> list[tuple[int, bytes]]:
    """Chunk ``index`` of every partition's stream, as (partition, value) in produce order."""
    start = sum(CHUNKS[:index])
    out: list[tuple[int, bytes]] = []
    for partition in range(PARTITIONS):
        rng = random.Random(partition)
        lines = [record(partition, i, rng) for i in range(start + CHUNKS[index])]
        out.extend((partition, line) for line in lines[start:])
    return out


def send(bootstrap: str, topic: str, items: list[tuple[int, bytes]]) -> None:
    produce(bootstrap, topic, [v for _, v in items], partition_of=lambda i: items[i][0])


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@dataclass
class ImagePod:
    """One pod: its volumes, its containers' environments, the running job container."""

    ordinal: int
    volumes: dict[str, Path]
    init_env: dict[str, str]
    env: dict[str, str]
    log: Path
    job: Container | None = None

    @property
    def metrics_port(self) -> int:
        return int(self.env["BYTEWAX_DATAFLOW_API_PORT"])


@dataclass
class ImageStatefulSet:
    image: BuiltImage
    sts: Obj
    pods: list[ImagePod]
    made: list[Container]

    def _container(self, name: str, pod: ImagePod) -> Container:
        c = Container(
            self.image.run_engine,
            self.image.id,
            self.image.config,
            mounts(container(self.sts, name), pod.volumes),
            read_only=True,
        )
        self.made.append(c)
        return c

    def init(self) -> None:
        """Every pod's init container at once (podManagementPolicy: Parallel)."""
        spec = container(self.sts, "init")
        inits = []
        for pod in self.pods:
            c = self._container("init", pod)
            c.start(spec["command"], pod.init_env)
            inits.append(c)
        for pod, c in zip(self.pods, inits, strict=True):
            code, out, err = c.wait(120)
            assert code == 0, f"init of pod {pod.ordinal}: {out!r} {err!r}"
            c.remove()

    def start(self, pod: ImagePod) -> None:
        spec = container(self.sts, "dataflow")
        pod.job = self._container("dataflow", pod)
        pod.job.start([*spec["command"], *spec["args"]], pod.env, log=pod.log)
        if pod.job.engine == "buildah":  # its probes need the container's first process
            job = pod.job
            wait_for(lambda: job.pid1() is not None, 60, f"pod {pod.ordinal}'s tini")

    def probe(
        self, pod: ImagePod, kind: str, max_age: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The StatefulSet's exec probe ``kind`` run in the pod's job container."""
        assert pod.job is not None
        command = list(container(self.sts, "dataflow")[kind]["exec"]["command"])
        if max_age is not None:
            command[-1] = max_age
        pid1 = pod.job.pid1()
        if pid1 is not None:
            command += ["--since-pid", str(pid1)]
        return pod.job.exec(command, pod.env, timeout=30)

    def counted(self) -> float:
        samples = [metric(p.metrics_port, "confusion_records_total") for p in self.pods]
        assert None not in samples, "a pod's /metrics did not answer"
        return sum(s or 0.0 for s in samples)

    def describe(self) -> str:
        return "\n".join(
            f"--- pod {p.ordinal}:\n"
            f"{p.log.read_text(errors='replace')[-3000:] if p.log.exists() else ''}"
            for p in self.pods
        )


def newest_write(volumes: Iterable[Path]) -> float:
    """The newest modification time of any file in ``volumes``."""
    return max(
        (f.stat().st_mtime for v in volumes for f in v.rglob("*") if f.is_file()), default=0.0
    )


@pytest.fixture
def made() -> Iterator[list[Container]]:
    containers: list[Container] = []
    yield containers
    for c in containers:
        c.remove()


def test_the_image_resumes_from_its_checkpoint_after_sigkill(
    kafka_bootstrap: str,
    es_url: str,
    kafka_admin: AdminClient,
    topic: Callable[..., str],
    es_index: Callable[..., str],
    es_client: Elasticsearch,
    tmp_path: Path,
    made: list[Container],
) -> None:
    image = built_image()
    objects = base_objects(with_secret_example=False)
    sts = objects.statefulset
    replicas = sts["spec"]["replicas"]
    name = sts["metadata"]["name"]
    namespace = sts["metadata"]["namespace"]
    main_spec = container(sts, "dataflow")
    assert (
        replicas
        * int(
            pod_env(main_spec, objects, pod_name=f"{name}-0", namespace=namespace, secrets={})[
                "BYTEWAX_WORKERS_PER_PROCESS"
            ]
        )
        == PARTITIONS
    )

    topic_name = topic(partitions=PARTITIONS)
    dead_topic = f"{topic_name}.dead-letter"  # the default CONFUSION_DLQ_TOPIC
    kafka_admin.create_topics([NewTopic(dead_topic, 1, 1)])[dead_topic].result(timeout=30)
    index = es_index()
    peer_port = free_port([PEER_HOST.format(i=i) for i in range(replicas)])
    common = {
        "CONFUSION_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CONFUSION_ES_URL": es_url,
        "CONFUSION_KAFKA_TOPIC": topic_name,
        "CONFUSION_ES_INDEX": index,
        "CONFUSION_KAFKA_GROUP": f"{topic_name}-group",
    }

    pods: list[ImagePod] = []
    for i in range(replicas):

        def env_of(c: Obj, i: int = i) -> dict[str, str]:
            secrets: dict[str, dict[str, str]] = {
                s["secretRef"]["name"]: {} for s in c.get("envFrom", []) if "secretRef" in s
            }
            return pod_env(c, objects, pod_name=f"{name}-{i}", namespace=namespace, secrets=secrets)

        manifest_init, manifest_main = env_of(container(sts, "init")), env_of(main_spec)
        init_env = {**manifest_init, **common, "BYTEWAX_PEER_ADDRESS": f"{PEER_HOST}:{peer_port}"}
        env = {**manifest_main, **common, "BYTEWAX_DATAFLOW_API_PORT": str(free_port())}
        for manifest, actual in ((manifest_init, init_env), (manifest_main, env)):
            changed = {k for k in set(manifest) | set(actual) if manifest.get(k) != actual.get(k)}
            assert changed <= LOOPBACK_DIFFERENCES, changed - LOOPBACK_DIFFERENCES
        load_settings(env)  # the job would start with it
        volumes = make_volumes(
            sts,
            tmp_path / f"pod-{i}",
            shared=None
            if i == 0
            else {
                n: p
                for n, p in pods[0].volumes.items()
                if "persistentVolumeClaim" in _volume(sts, n)
            },
        )
        pods.append(ImagePod(i, volumes, init_env, env, tmp_path / f"pod-{i}.log"))
    recovery = next(
        p for n, p in pods[0].volumes.items() if "persistentVolumeClaim" in _volume(sts, n)
    )
    recovery_dir = recovery / Path(pods[0].env["BYTEWAX_RECOVERY_DIRECTORY"]).relative_to(
        next(m["mountPath"] for m in main_spec["volumeMounts"] if m["name"] == "recovery")
    )
    cluster = ImageStatefulSet(image, sts, pods, made)

    window = int(pods[0].env["CONFUSION_WINDOW_SIZE"])
    emit = int(pods[0].env["CONFUSION_EMIT_EVERY"])
    try:
        try:
            _run(cluster, kafka_bootstrap, topic_name, es_client, index, recovery_dir)
        except Exception:
            print(cluster.describe())
            raise
        _check_outputs(kafka_bootstrap, dead_topic, es_client, index, window, emit)
    finally:
        kafka_admin.delete_topics([dead_topic])


def _volume(sts: Obj, name: str) -> Obj:
    return next(v for v in pod_spec(sts)["volumes"] if v["name"] == name)


def _run(
    cluster: ImageStatefulSet,
    bootstrap: str,
    topic: str,
    es: Elasticsearch,
    index: str,
    recovery_dir: Path,
) -> None:
    pods = cluster.pods
    emit = int(pods[0].env["CONFUSION_EMIT_EVERY"])

    def documents_after(chunk_index: int) -> int:
        return PARTITIONS * 2 * (good_records(chunk_index) // emit)

    def resume_epoch() -> int:
        return recovery_log(recovery_dir).resume_epoch

    # 1. The records wait in the topic. Pod 0 starts alone: it waits for its peer before it
    #    polls anything, so its startup probe says there is no heartbeat yet.
    send(bootstrap, topic, chunk(0))
    cluster.init()
    cluster.start(pods[0])
    early = cluster.probe(pods[0], "startupProbe")
    assert early.returncode == 1 and "no heartbeat" in early.stdout + early.stderr, early
    for pod in pods[1:]:
        cluster.start(pod)
    wait_for(
        lambda: all(cluster.probe(p, "startupProbe").returncode == 0 for p in pods),
        180,
        "every pod's startup probe",
        every=1.0,
    )
    wait_for(lambda: count(es, index) >= documents_after(0), 120, "the first documents")
    for pod in pods:
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            result = cluster.probe(pod, kind)
            assert result.returncode == 0, f"{kind} of pod {pod.ordinal}: {result}"

    # 2. After a snapshot of the first records, more arrive and are read; pod 1 is SIGKILLed
    #    (all its processes, as a node loss) and pod 0 cannot go on without it.
    wait_for(lambda: resume_epoch() > 1, 90, "a snapshot of the first records")
    send(bootstrap, topic, chunk(1))
    wait_for(
        lambda: cluster.counted() >= PARTITIONS * good_records(1),
        90,
        "the second records",
        every=0.1,
    )
    assert pods[1].job is not None and pods[0].job is not None
    pods[1].job.signal(signal.SIGKILL)
    code, _, _ = pods[1].job.wait(60)
    assert code != 0
    code, _, _ = pods[0].job.wait(60)
    assert code != 0, "pod 0 went on without its peer"
    checkpoint = resume_epoch()
    assert checkpoint > 1
    for pod in pods:
        assert pod.job is not None
        pod.job.remove()

    # 3. New containers on the same volumes (the heartbeat emptyDir survived): until it polls,
    #    a new job container is not healthy on its predecessor's heartbeat. The probe allows
    #    one second of slack (btime is whole seconds), so the new container starts more than
    #    that after the old job's last write, as any real restart does (a run that restarted
    #    within the second once saw the old heartbeat as the new job's).
    wait_for(
        lambda: time.time() - newest_write(pods[0].volumes.values()) > 2.5,
        30,
        "the old job's last write to age past the probe's slack",
        every=0.2,
    )
    cluster.init()
    cluster.start(pods[0])
    stale = cluster.probe(pods[0], "startupProbe")
    assert stale.returncode == 1 and "predates" in stale.stdout + stale.stderr, stale
    for pod in pods[1:]:
        cluster.start(pod)
    send(bootstrap, topic, chunk(2))
    wait_for(lambda: count(es, index) >= documents_after(2), 180, "all documents")
    wait_for(
        lambda: all(cluster.probe(p, "livenessProbe").returncode == 0 for p in pods),
        60,
        "liveness after the restart",
        every=1.0,
    )
    executions = recovery_log(recovery_dir).executions
    assert executions[-1][2] == checkpoint, executions
    # Resumed, not restarted: only the records after the checkpoint were counted again.
    wait_for(
        lambda: cluster.counted() >= PARTITIONS * good_records(2, from_chunk=2),
        60,
        "the third records counted",
    )
    assert cluster.counted() < PARTITIONS * good_records(2)

    # 4. SIGTERM to PID 1 (tini) reaches the job, which stops at once (no final snapshot:
    #    docs/kubernetes.md), well within the grace period; the kubelet would SIGKILL after it.
    grace = pod_spec(cluster.sts)["terminationGracePeriodSeconds"]
    for pod in reversed(pods):
        assert pod.job is not None
        pod.job.signal(signal.SIGTERM)
        code, _, _ = pod.job.wait(grace)
        assert code != 0, f"pod {pod.ordinal} exited 0 on SIGTERM"


def _check_outputs(
    bootstrap: str, dead_topic: str, es: Elasticsearch, index: str, window: int, emit: int
) -> None:
    lines = [line for i in range(len(CHUNKS)) for _, line in chunk(i)]
    expected = expected_run(
        lines, window_size=window, emit_every=emit, bounded=False, engine="exact"
    )
    found: dict[str, dict[str, Any]] = all_docs(es, index)
    problems = compare(found.values(), expected.documents)
    assert not problems, "\n".join(problems)
    latest = all_docs(es, f"{index}-latest")
    newest = {
        m: max(d["seq"] for d in expected.documents.values() if d["model"] == m)
        for m in {d["model"] for d in expected.documents.values()}
    }
    assert {d["model"]: d["seq"] for d in latest.values()} == newest
    letters = read_topic(bootstrap, dead_topic)
    origins = {
        (dict(m.headers() or [])["source_partition"], dict(m.headers() or [])["source_offset"])
        for m in letters
    }
    assert len(origins) == len(expected.rejections) <= len(letters)
