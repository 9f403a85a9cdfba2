"""The Kubernetes contract, played on loopback with the real Kafka and Elasticsearch.

The StatefulSet's pods are started as the manifests describe them: the environment is read
from k8s/base (ConfigMap + the StatefulSet's env, resolved like the kubelet does), each pod
runs the init container's command and then the job's command, with its own
BYTEWAX_POD_NAME/BYTEWAX_STATEFULSET_NAME, and all share one recovery directory. The only
differences from a cluster, each asserted below so none slips in unnoticed:

- addresses: the brokers, Elasticsearch, and a loopback peer address instead of the pods'
  DNS names; per-pod paths for the pods' volumes; a Prometheus port per pod (one network
  namespace here);
- names: a fresh topic, index and consumer group per run;
- the Secret is left out (the loopback servers have no authentication) and tini is not
  used (it only forwards signals; the test sends SIGKILL itself).

The run: records stream in while the pods work; after a snapshot, more records arrive and the
pods are SIGKILLed before the next one (a pod loss takes the whole cluster down); restarted,
they resume from the checkpoint, replay what was not in it, and the Elasticsearch documents
equal the oracle's: none lost, none twice, the replayed ones overwritten in place.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from elasticsearch import Elasticsearch

from flows.settings import load_settings
from tests.integration.pipeline import all_docs, count, produce, read_topic
from tests.k8s.loopback import LoopbackStatefulSet, Pod, recovery_log, wait_for
from tests.k8s.manifests import Obj, base_objects, container, pod_env
from tests.reference import compare, expected_run

PARTITIONS = 4  # >= replicas x workers, so every pod reads (and beats) something
CHUNKS = (6000, 1500, 4500)  # records per partition: before, during and after the crash
BAD_EVERY = 1500  # record i with i % BAD_EVERY == BAD_EVERY - 1 is malformed
START_MS = 1_795_341_600_000
CLASSES = ("cat", "dog", "fox")
# The only variables whose value may differ from the manifests' (see the module docstring).
LOOPBACK_DIFFERENCES = {
    "CONFUSION_KAFKA_BOOTSTRAP",
    "CONFUSION_ES_URL",
    "CONFUSION_KAFKA_TOPIC",
    "CONFUSION_ES_INDEX",
    "CONFUSION_KAFKA_GROUP",
    "CONFUSION_HEARTBEAT_FILE",
    "BYTEWAX_PEER_ADDRESS",
    "BYTEWAX_HOSTFILE_PATH",
    "BYTEWAX_RECOVERY_DIRECTORY",
    "BYTEWAX_DATAFLOW_API_CACHE_PATH",
    "BYTEWAX_DATAFLOW_API_PORT",
    "PATH",
    "PYTHONPATH",
    "TMPDIR",
}


def good_records(upto_chunk: int, from_chunk: int = 0) -> int:
    """Valid records per partition in chunks ``from_chunk .. upto_chunk``."""
    lo, hi = sum(CHUNKS[:from_chunk]), sum(CHUNKS[: upto_chunk + 1])
    return sum(1 for i in range(lo, hi) if i % BAD_EVERY != BAD_EVERY - 1)


def documents_after(chunk_index: int, emit: int) -> int:
    """History documents once chunks 0 .. chunk_index are counted (2 models a partition)."""
    return PARTITIONS * 2 * (good_records(chunk_index) // emit)


def models_of(partition: int) -> tuple[str, str]:
    """Each partition carries its own two models, so each model's order is its partition's."""
    return f"p{partition}-scores", f"p{partition}-labels"


def record(partition: int, i: int, rng: random.Random) -> bytes:
    if i % BAD_EVERY == BAD_EVERY - 1:  # now and then a record the job must dead-letter
        return b'{"id": "broken-' + f"{partition}-{i}".encode() + b'", "label": '
    truth = rng.choice(CLASSES)
    guess = truth if rng.random() < 0.8 else rng.choice(CLASSES)
    scores = {c: round(rng.random() * 0.4 + (0.6 if c == guess else 0.0), 4) for c in CLASSES}
    scored, labelled = models_of(partition)
    return orjson.dumps(
        {
            "id": f"{partition}-{i:06d}",
            "ts": START_MS + 40 * i,
            "label": truth,
            "predictions": {scored: scores, labelled: guess},
        }
    )


def chunk(index: int) -> list[tuple[int, bytes]]:
    """Chunk ``index`` of every partition's stream, as (partition, value) in produce order."""
    start = sum(CHUNKS[:index])
    out: list[tuple[int, bytes]] = []
    for partition in range(PARTITIONS):
        rng = random.Random(f"{partition}")
        lines = [record(partition, i, rng) for i in range(start + CHUNKS[index])]
        out.extend((partition, line) for line in lines[start:])
    return out


def send(bootstrap: str, topic: str, items: list[tuple[int, bytes]]) -> None:
    produce(bootstrap, topic, [value for _, value in items], partition_of=lambda i: items[i][0])


def manifest_env() -> tuple[dict[str, str], Obj]:
    """The pod environment the manifests define (ordinal 0, Secret left out), and the pod."""
    objects = base_objects(with_secret_example=False)
    sts = objects.statefulset
    env: dict[str, str] = {}
    for name in ("init", "dataflow"):
        c = container(sts, name)
        secrets: dict[str, dict[str, str]] = {
            s["secretRef"]["name"]: {} for s in c.get("envFrom", []) if "secretRef" in s
        }
        env.update(
            pod_env(
                c,
                objects,
                pod_name=f"{sts['metadata']['name']}-0",
                namespace="confusion-stream",
                secrets=secrets,
            )
        )
    return env, sts


def es_docs(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    return all_docs(es, index) if es.indices.exists(index=index) else {}


def test_pods_resume_from_their_checkpoint_after_sigkill(
    kafka_bootstrap: str,
    es_url: str,
    kafka_admin: AdminClient,
    topic: Callable[..., str],
    es_index: Callable[..., str],
    es_client: Elasticsearch,
    tmp_path: Path,
) -> None:
    env, sts_obj = manifest_env()
    main, init = container(sts_obj, "dataflow"), container(sts_obj, "init")
    replicas = sts_obj["spec"]["replicas"]
    assert replicas * int(env["BYTEWAX_WORKERS_PER_PROCESS"]) <= PARTITIONS

    name = topic(partitions=PARTITIONS)
    dead_topic = f"{name}.dead-letter"  # the default CONFUSION_DLQ_TOPIC
    kafka_admin.create_topics([NewTopic(dead_topic, 1, 1)])[dead_topic].result(timeout=30)
    index = es_index()
    env.update(
        {
            "CONFUSION_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "CONFUSION_ES_URL": es_url,
            "CONFUSION_KAFKA_TOPIC": name,
            "CONFUSION_ES_INDEX": index,
            "CONFUSION_KAFKA_GROUP": f"{name}-group",
        }
    )
    window, emit = int(env["CONFUSION_WINDOW_SIZE"]), int(env["CONFUSION_EMIT_EVERY"])
    sts = LoopbackStatefulSet(
        tmp_path,
        env,
        name=sts_obj["metadata"]["name"],
        job_command=[*main["command"][2:], *main["args"]],
        init_command=init["command"],
    )
    assert main["command"][:2] == ["/usr/bin/tini", "--"]

    # The loopback pods differ from the manifests only where the module docstring says.
    pod0 = sts.pod_env(0, replicas)
    manifest, _ = manifest_env()
    changed = {k for k in set(manifest) | set(pod0) if manifest.get(k) != pod0.get(k)}
    assert changed <= LOOPBACK_DIFFERENCES | {"BYTEWAX_REPLICAS"}, changed - LOOPBACK_DIFFERENCES
    assert pod0["BYTEWAX_REPLICAS"] == str(replicas)
    load_settings(pod0)  # the job would start with it

    try:
        _run(sts, replicas, kafka_bootstrap, name, main, es_client, index, emit)
        sts.kill()
        _check_outputs(kafka_bootstrap, dead_topic, es_client, index, window, emit)
    finally:
        sts.kill()
        kafka_admin.delete_topics([dead_topic])


def _check_outputs(
    bootstrap: str, dead_topic: str, es: Elasticsearch, index: str, window: int, emit: int
) -> None:
    """Every document exactly once, equal to the oracle's; every dead letter delivered."""
    lines = [line for i in range(len(CHUNKS)) for _, line in chunk(i)]
    expected = expected_run(lines, window_size=window, emit_every=emit, bounded=False)
    found = es_docs(es, index)
    assert all(
        doc_id == f"{d['model']}/{d['window']['kind']}/{d['seq']}" for doc_id, d in found.items()
    )
    problems = compare(found.values(), expected.documents)
    assert not problems, "\n".join(problems)
    latest = es_docs(es, f"{index}-latest")
    newest = {
        m: max(d["seq"] for d in expected.documents.values() if d["model"] == m)
        for m in {d["model"] for d in expected.documents.values()}
    }
    assert {d["model"]: d["seq"] for d in latest.values()} == newest
    # Dead letters are at-least-once: each bad record is there, a replay may add a copy.
    letters = read_topic(bootstrap, dead_topic)
    origins = {
        (dict(m.headers() or [])["source_partition"], dict(m.headers() or [])["source_offset"])
        for m in letters
    }
    assert len(origins) == len(expected.rejections) <= len(letters)


def counted(pods: list[Pod]) -> float:
    """Records the pods' current processes have counted, from their Prometheus /metrics."""
    samples = [p.metric("confusion_records_total") for p in pods]
    assert None not in samples, "a pod's /metrics did not answer"
    return sum(s or 0.0 for s in samples)


def _run(
    sts: LoopbackStatefulSet,
    replicas: int,
    bootstrap: str,
    name: str,
    main: Obj,
    es: Elasticsearch,
    index: str,
    emit: int,
) -> None:
    probes = {
        kind: main[kind]["exec"]["command"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }

    def resume_epoch() -> int:
        return recovery_log(sts.recovery_directory).resume_epoch

    # 1. The first records wait in the topic; both pods start, pass every probe, work through.
    send(bootstrap, name, chunk(0))
    pods = sts.start(replicas)
    wait_for(
        lambda: all(sts.probe(p, probes["startupProbe"]).returncode == 0 for p in pods),
        120,
        "both pods' startup probes",
        sts,
        every=1.0,
    )
    wait_for(lambda: count(es, index) >= documents_after(0, emit), 120, "the first documents", sts)
    for pod in pods:
        for kind, command in probes.items():
            result = sts.probe(pod, command)
            assert result.returncode == 0, f"{kind} of pod {pod.ordinal}: {result.stderr}"

    # 2. Once a snapshot holds all of it, more records arrive and are read; a pod is SIGKILLed
    #    before the next snapshot can include them.
    open_epoch = resume_epoch()
    wait_for(lambda: resume_epoch() > open_epoch, 60, "a snapshot of the first records", sts)
    checkpoint = resume_epoch()
    send(bootstrap, name, chunk(1))
    wait_for(
        lambda: counted(pods) >= PARTITIONS * good_records(1),
        60,
        "the second records",
        sts,
        every=0.1,
    )
    assert resume_epoch() == checkpoint, "a snapshot slipped in: the crash would replay nothing"
    sts.kill([pods[1]])
    # The other pod cannot go on alone: it exits, and Kubernetes restarts both.
    wait_for(lambda: pods[0].process.poll() is not None, 60, "pod 0 to fail without pod 1", sts)
    assert pods[0].process.returncode != 0
    time.sleep(2.5)  # the probe's own limit, shortened from the manifest's to 2 s
    stale = sts.probe(pods[0], [*probes["livenessProbe"][:-1], "2"])
    assert stale.returncode == 1 and "stopped polling" in stale.stderr, stale

    # 3. Restarted: the old heartbeat does not count for the new processes, which resume from
    #    the checkpoint, replay the second records and go on with the third.
    pods = sts.start(replicas)
    early = sts.probe(pods[0], probes["startupProbe"])
    assert early.returncode == 1 and "predates" in early.stderr + early.stdout, early
    send(bootstrap, name, chunk(2))
    wait_for(lambda: count(es, index) >= documents_after(2, emit), 120, "all documents", sts)
    wait_for(
        lambda: all(sts.probe(p, probes["livenessProbe"]).returncode == 0 for p in pods),
        60,
        "liveness after the restart",
        sts,
        every=1.0,
    )
    assert [e[2] for e in recovery_log(sts.recovery_directory).executions][-1] == checkpoint

    # Exactly the records after the checkpoint were counted again (the second chunk replayed,
    # the third new), nothing from before it; a document written twice was overwritten in place
    # and can only be one of the replayed ones.
    assert counted(pods) == PARTITIONS * good_records(2, from_chunk=1)
    hits = es.search(index=index, size=10_000, version=True, sort=["_doc"])["hits"]["hits"]
    rewritten = [hit["_id"] for hit in hits if hit["_version"] > 1]
    assert all(hit["_source"]["seq"] > good_records(0) for hit in hits if hit["_version"] > 1), (
        rewritten
    )
