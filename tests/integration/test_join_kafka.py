"""Delayed labels from Kafka: a predictions topic and a labels topic of 2 partitions each,
the job SIGKILLed and restarted while both stream in, with 1 worker, 2 workers and 2 processes.

The labels trail their predictions, so every kill lands with halves waiting in the join state.
Records of several partitions interleave in arrival order, so the windows' order is not fixed;
what must hold exactly is that every label is counted once: each model's history has every
emission from 100 to 6,000 once, each window is consistent, and the last one counts 6,000
predictions seen and joined, none waiting (a label counted twice would push ``seq`` past 6,000,
a lost one would leave it short with a prediction waiting).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from flows.connectors.elasticsearch.mapping import latest_index
from tests.integration.pipeline import (
    BackgroundProducer,
    IndexNameFactory,
    Job,
    TopicFactory,
    all_docs,
    history,
    init_recovery,
    job_env,
    sample_lines,
)
from tests.integration.test_recovery_kill import KILLS, Checkpoints, run_with_kills

MODELS = ("model1", "model2", "model3")
RATE = 300
T0 = 1_795_341_600_000


def halves() -> tuple[list[bytes], list[bytes]]:
    preds, labels = [], []
    for k, line in enumerate(sample_lines()):
        record = json.loads(line)
        record["ts"] = T0 + 250 * k
        labels.append(
            json.dumps({"id": record["id"], "ts": record["ts"] + 5000, "label": record["label"]})
        )
        del record["label"]
        preds.append(json.dumps(record))
    return [p.encode() for p in preds], [lab.encode() for lab in labels]


@pytest.mark.slow
@pytest.mark.parametrize(
    "topology",
    [{"workers": 1}, {"workers": 2}, {"processes": 2}],
    ids=["1-worker", "2-workers", "2-processes"],
)
def test_kills_between_the_halves_count_every_label_once(
    kafka_bootstrap: str,
    es_url: str,
    es_client: Elasticsearch,
    topic: TopicFactory,
    es_index: IndexNameFactory,
    tmp_path: Path,
    topology: dict[str, int],
) -> None:
    predictions, labels = topic(partitions=2), topic(partitions=2)
    index = es_index()
    recovery = tmp_path / "recovery"
    init_recovery(recovery, partitions=2)
    env = job_env(
        source="kafka",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=predictions,
        labels_topic=labels,
        kafka_group=f"{predictions}-job",
        sink="elasticsearch",
        es_url=es_url,
        es_index=index,
        window_size=500,
        emit_every=100,
        batch_size=200,
        es_flush_interval=0.2,
        summary="false",
        join_shards=2,
    )
    job = Job(env, tmp_path / "job.log", recovery=recovery, snapshot_s=1, **topology)
    pred_lines, label_lines = halves()
    # Labels trail: both producers write at the same rate and the labels one starts second, so
    # predictions wait in the join state at every kill.
    pred_producer = BackgroundProducer(
        kafka_bootstrap, predictions, pred_lines, rate=RATE, partition_of=lambda i: i % 2
    )
    label_producer = BackgroundProducer(
        kafka_bootstrap,
        labels,
        label_lines,
        rate=RATE,
        partition_of=lambda i: (i + 1) % 2,
    )
    checkpoints = Checkpoints(kafka_bootstrap, f"{predictions}-job", predictions, 2)
    pred_producer.start()
    try:
        label_producer.start()
        run_with_kills(job, es_client, index, checkpoints, pred_producer, KILLS)
    finally:
        job.kill9()
        checkpoints.close()
    pred_producer.finish()
    label_producer.finish()

    got = history(es_client, index)
    want = sorted(f"{m}/count/{s}" for m in MODELS for s in range(100, 6001, 100))
    assert sorted(got) == want, job.output()[-3000:]
    for doc in got.values():
        window = doc["window"]
        assert window["count"] == min(doc["seq"], 500)
        assert sum(map(sum, doc["matrix"])) == window["count"]
        join = doc["join"]
        assert join["joined"] == doc["seq"]
        assert join["seen"] == join["joined"] + join["waiting"] + join["expired"]
        assert join["latency_ms"]["max"] is not None
    latest = all_docs(es_client, latest_index(index))
    for model, doc in latest.items():
        assert doc["seq"] == 6000, model
        assert doc["join"]["seen"] == 6000 and doc["join"]["waiting"] == 0
        assert doc["join"]["expired"] == 0
        assert doc["join"]["latency_ms"]["p50"] == 5000
