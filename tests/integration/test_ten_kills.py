"""Ten SIGKILLs at seeded random moments of a 2-process job reading 4 partitions while a producer
writes all along: the history equals the uninterrupted run's, no document twice, no gap in any
model's ``seq``.

Each model has its own partition (its records are split out of the sample stream), so a
model's records keep one order however the partitions interleave, and the reference is exactly
the file source's run over the same records. Kill moments are states, drawn from a seeded
generator: "the history holds N documents", some also "and a snapshot was just committed".
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from flows.connectors.elasticsearch.mapping import latest_index
from tests.integration.pipeline import (
    BackgroundProducer,
    IndexNameFactory,
    Job,
    TopicFactory,
    all_docs,
    count,
    history,
    init_recovery,
    job_env,
    periodic,
    recompute,
    sample_lines,
    wait_for,
    write_lines,
)
from tests.integration.test_recovery_kill import Checkpoints

SEED = 18
KILLS = 10
MODELS = ("model1", "model2", "model3", "model4")
PARTITIONS = len(MODELS)  # a multiple of the 2 workers
WINDOW, EMIT = 300, 100
RECORDS = 2400  # per model
RATE = 400  # records/s over all partitions: the stream lasts ~24 s, across the kills
Doc = dict[str, Any]


def split_by_model(lines: list[bytes]) -> list[tuple[int, bytes]]:
    """One record per model and sample record, with the partition of its model."""
    out: list[tuple[int, bytes]] = []
    for line in lines:
        record = orjson.loads(line)
        preds = record["predictions"]
        preds["model4"] = preds["model1"]
        for part, model in enumerate(MODELS):
            one = {**record, "id": f"{record['id']}-{model}", "predictions": {model: preds[model]}}
            out.append((part, orjson.dumps(one)))
    return out


@pytest.mark.slow
def test_ten_random_kills_of_a_two_process_job(
    kafka_bootstrap: str,
    es_url: str,
    es_client: Elasticsearch,
    topic: TopicFactory,
    es_index: IndexNameFactory,
    tmp_path: Path,
) -> None:
    records = split_by_model(sample_lines()[:RECORDS])
    values = [value for _part, value in records]
    reference = periodic(
        recompute(
            write_lines(tmp_path / "all.jsonl", values),
            tmp_path,
            window_size=WINDOW,
            emit_every=EMIT,
        ),
        EMIT,
    )
    total = len(reference)
    name, index = topic(partitions=PARTITIONS), es_index()
    recovery = tmp_path / "recovery"
    init_recovery(recovery, partitions=2)
    env = job_env(
        source="kafka",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=name,
        kafka_group=f"{name}-job",
        sink="elasticsearch",
        es_url=es_url,
        es_index=index,
        window_size=WINDOW,
        emit_every=EMIT,
        batch_size=100,
        es_flush_interval=0.2,
        summary="false",
    )
    job = Job(env, tmp_path / "job.log", recovery=recovery, processes=2, snapshot_s=1)
    producer = BackgroundProducer(
        kafka_bootstrap, name, values, rate=RATE, partition_of=lambda i: records[i][0]
    )
    checkpoints = Checkpoints(kafka_bootstrap, f"{name}-job", name, PARTITIONS)
    rng = random.Random(SEED)
    thresholds = sorted(rng.sample(range(5, total - 10), KILLS))
    after_snapshot = [rng.random() < 0.5 for _ in thresholds]

    def documents() -> int:
        job.assert_alive()
        return count(es_client, index)

    producer.start()
    try:
        job.start()
        for docs, snap in zip(thresholds, after_snapshot, strict=True):
            base = checkpoints.offset()

            def ready(d: int = docs, s: bool = snap, b: int = base) -> bool:
                if documents() < d:
                    return False
                return not s or checkpoints.offset() > b or not producer.is_alive()

            wait_for(f"{docs} documents", ready, 120, every=0.05)
            job.kill9()
            job.start()
        wait_for(f"all {total} documents", lambda: documents() >= total, 180)
        # Documents replayed after the last restart are rewritten with identical values: wait
        # until the job has checkpointed past the end of the topic, then nothing is pending.
        wait_for("a checkpoint at the end", lambda: checkpoints.offset() >= len(values), 60)
    finally:
        job.kill9()
        checkpoints.close()
    producer.finish()
    print(f"ten kills at documents {thresholds} (after a snapshot: {after_snapshot})")

    assert job.starts == KILLS + 1
    got = history(es_client, index)
    assert len(got) == total and got.keys() == reference.keys()
    for key, doc in reference.items():
        assert got[key] == doc, f"document {key} differs from the uninterrupted run"
    for model in MODELS:
        seqs = sorted(d["seq"] for d in got.values() if d["model"] == model)
        assert seqs == list(range(EMIT, RECORDS + 1, EMIT)), f"gap or duplicate in {model}"
    latest = all_docs(es_client, latest_index(index))
    assert {m: d["seq"] for m, d in latest.items()} == dict.fromkeys(MODELS, RECORDS)
