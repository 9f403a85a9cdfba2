"""Elasticsearch as a source, on the real node: the seed's scenario and the cursor's promises.

The seed read prediction records from ``raw_data_input`` and wrote confusion matrices to
``calculated_confusion_matrix``; here records are indexed into a ``raw_data_input-*`` index while
the job runs, the job is SIGKILLed in the middle and resumed from its checkpoint, and the result
index must hold exactly the documents `tests.reference` recomputes from the same records (window
1,000, weighted ensemble of 3 models). A skipped or repeated record would shift every later
window, so equality proves the cursor neither skips nor repeats.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch, helpers

from tests.integration.pipeline import (
    IndexNameFactory,
    Job,
    all_docs,
    count,
    init_recovery,
    job_env,
    sample_lines,
    wait_for,
)
from tests.reference import compare, expected_run

WINDOW = 1000
EMIT = 100
WEIGHTS = {"model1": 0.5, "model2": 0.6, "model3": 0.7}
WEIGHTS_ENV = ",".join(f"{m}={w}" for m, w in WEIGHTS.items())
MODELS = 4  # model1..3 and the ensemble
RATE = 300  # records/s: 6,000 records are indexed over 20 s while the job runs and is killed
Doc = dict[str, Any]


def make_input(es: Elasticsearch, index: str, shards: int = 1) -> None:
    # Predictions are a label for one model and a score map for another: not for dynamic
    # mapping (README, "Elasticsearch as a source", says so too).
    es.indices.create(
        index=index,
        settings={"number_of_shards": shards, "number_of_replicas": 0},
        mappings={"dynamic": False, "properties": {"id": {"type": "keyword"}}},
    )


def index_lines(
    es: Elasticsearch, index: str, lines: Sequence[bytes], *, rate: float = 0.0, chunk: int = 50
) -> None:
    """Index ``lines`` in order, ``chunk`` per bulk request, paced at ``rate``/s (0: at once).

    One writer waiting for each bulk gives the records ``_seq_no`` in file order (one shard).
    """
    start = time.monotonic()
    for first in range(0, len(lines), chunk):
        part = lines[first : first + chunk]
        ok, errors = helpers.bulk(
            es,
            ({"_index": index, "_source": orjson.loads(line)} for line in part),
            chunk_size=chunk,
            raise_on_error=False,
        )
        assert not errors and ok == len(part), errors[:3]
        if rate > 0:
            ahead = start + (first + len(part)) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


class BackgroundIndexer(threading.Thread):
    def __init__(self, es: Elasticsearch, index: str, lines: Sequence[bytes], rate: float) -> None:
        super().__init__(daemon=True)
        self.args = (es, index, lines)
        self.rate = rate
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            index_lines(*self.args, rate=self.rate)
        except BaseException as exc:  # re-raised by finish()
            self.error = exc

    def finish(self) -> None:
        self.join(120)
        assert not self.is_alive(), "indexer did not finish"
        if self.error is not None:
            raise self.error


def es_job(es_url: str, source: str, sink: str, tmp: Path, **extra: object) -> Job:
    recovery = tmp / "recovery"
    init_recovery(recovery)
    env = job_env(
        source="elasticsearch",
        es_url=es_url,
        es_source_index=source,
        sink="elasticsearch",
        es_index=sink,
        window_size=WINDOW,
        emit_every=EMIT,
        ensemble_weights=WEIGHTS_ENV,
        es_source_poll=0.2,
        summary="false",
        dead_letter_path=tmp / "dead.jsonl",
        **extra,
    )
    return Job(env, tmp / "job.log", recovery=recovery)


def last_seq(out: Path) -> dict[str, int]:
    """Each model's highest ``seq`` in a JSON-lines output: its record count so far."""
    last: dict[str, int] = {}
    if out.exists():
        for line in out.read_bytes().splitlines():
            doc = orjson.loads(line)
            last[doc["model"]] = max(last.get(doc["model"], 0), doc["seq"])
    return last


def committed_shards(recovery: Path) -> int:
    """How many source partitions a restart would resume from a snapshot: those with a snapshot
    of the ``read`` step no newer than the recovery store's committed epoch. Tests wait on this
    state before a kill instead of on time."""
    keys: set[str] = set()
    for db in recovery.glob("part-*.sqlite3"):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            (commit,) = conn.execute("SELECT max(commit_epoch) FROM commits").fetchone()
            if commit is None:
                continue
            rows = conn.execute(
                "SELECT state_key FROM snaps WHERE step_id LIKE '%.read' AND snap_epoch <= ?",
                (commit,),
            ).fetchall()
            keys.update(key for (key,) in rows)
    return len(keys)


def results(es: Elasticsearch, index: str) -> list[Doc]:
    return list(all_docs(es, index).values())


@pytest.mark.slow
def test_seed_scenario_indexed_while_running_killed_and_resumed(
    es_url: str,
    es_client: Elasticsearch,
    es_index: IndexNameFactory,
    tmp_path: Path,
) -> None:
    lines = sample_lines()
    source, sink = es_index("raw_data_input"), es_index("calculated_confusion_matrix")
    make_input(es_client, source)
    expected = expected_run(
        lines, window_size=WINDOW, emit_every=EMIT, weights=WEIGHTS, bounded=False
    )
    assert len(expected.documents) == MODELS * len(lines) // EMIT
    job = es_job(es_url, source, sink, tmp_path)
    indexer = BackgroundIndexer(es_client, source, lines, RATE)
    indexer.start()
    try:
        job.start()
        wait_for("40 documents", lambda: job.assert_alive() or count(es_client, sink) >= 40, 120)
        wait_for("a committed snapshot", lambda: committed_shards(tmp_path / "recovery") == 1, 60)
        time.sleep(0.5)  # into the next epoch, so the restart also has a tail to replay
        assert indexer.is_alive(), "records stopped before the kill; nothing to resume into"
        job.kill9()
        killed_at = count(es_client, sink)
        job.start()
        wait_for(
            "every document",
            lambda: job.assert_alive() or count(es_client, sink) >= len(expected.documents),
            120,
        )
        time.sleep(1.0)  # a replayed tail, if any, lands (with the same ids and values)
    finally:
        job.kill9()
    indexer.finish()

    starts = job.output().split("=== start ")[1:]
    assert len(starts) == 2 and "no checkpoint" in starts[0], job.output()[-3000:]
    resumed = [int(n) for n in re.findall(r"resuming at _seq_no (\d+)", starts[1])]
    assert len(resumed) == 1 and 0 < resumed[0] < len(lines), job.output()[-3000:]
    assert 0 < killed_at < len(expected.documents)
    diffs = compare(results(es_client, sink), expected.documents)
    assert not diffs, "\n".join(diffs)


def test_bounded_backfill_over_shards_with_dead_letters_in_an_index(
    es_url: str,
    es_client: Elasticsearch,
    es_index: IndexNameFactory,
    tmp_path: Path,
) -> None:
    """Bounded: reads to the end found at start and stops; bad documents go to the dead-letter
    index with their index, shard and _seq_no; over 3 shards every record counts once."""
    lines = sample_lines()[:3000]
    bad = [
        b'{"id": "bad-1", "label": "A"}',
        b'{"id": "bad-2", "label": "A", "predictions": {"model1": "A", "model2": {"A": "high"}}}',
    ]
    source, sink, dlq = es_index("raw"), es_index("out"), es_index("dlq")
    make_input(es_client, source, shards=3)
    index_lines(es_client, source, [*lines[:1500], *bad, *lines[1500:]], chunk=500)
    out = tmp_path / "out.jsonl"
    recovery = tmp_path / "recovery"
    init_recovery(recovery)
    env = job_env(
        source="elasticsearch",
        es_url=es_url,
        es_source_index=f"{source}*",
        es_source_stop_at_end="true",
        sink="jsonl",
        output=out,
        dlq_index=dlq,
        window_size=WINDOW,
        emit_every=EMIT,
        ensemble_weights=WEIGHTS_ENV,
        es_index=sink,
    )
    job = Job(env, tmp_path / "job.log", recovery=recovery, workers=2)
    job.start()
    assert job.wait(120) == [0], job.output()[-3000:]

    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    final = {}
    for doc in docs:
        final[doc["model"]] = max(final.get(doc["model"], 0), doc["seq"])
    # Shards interleave, so only each model's count (its last seq) is order-free.
    expected = expected_run([*lines, *bad], window_size=WINDOW, emit_every=EMIT, weights=WEIGHTS)
    counts: dict[str, int] = {}
    for model, seq in expected.documents:
        counts[model] = max(counts.get(model, 0), seq)
    assert final == counts and counts["model1"] == 3001  # bad-2 still counts for model1
    assert len(job.output().split("no checkpoint")) == 4  # one line per shard

    letters = results(es_client, dlq)
    assert (
        sorted((d["scope"], d.get("model")) for d in letters)
        == sorted((r.scope, r.model) for r in expected.rejections)
        == [("entry", "model2"), ("record", None)]
    )
    for letter in letters:
        where = letter["source"]
        assert where["index"] == source and where["origin"] == f"{source}/{where['shard']}"
        found = es_client.search(
            index=source,
            preference=f"_shards:{where['shard']}",
            query={"term": {"_seq_no": where["seq_no"]}},
            seq_no_primary_term=True,
        )["hits"]["hits"]
        assert [orjson.loads(letter["raw"])] == [hit["_source"] for hit in found]

    # A second bounded run from the same checkpoint has nothing left to read.
    before = out.read_bytes()
    job.start()
    assert job.wait(120) == [0], job.output()[-3000:]
    assert out.read_bytes() == before
    assert len(re.findall(r"resuming at _seq_no \d+", job.output())) == 3


def test_latest_skips_what_was_there_and_reads_what_comes(
    es_url: str,
    es_client: Elasticsearch,
    es_index: IndexNameFactory,
    tmp_path: Path,
) -> None:
    lines = sample_lines()[:400]
    source = es_index("raw")
    make_input(es_client, source)
    index_lines(es_client, source, lines[:200], chunk=200)
    out = tmp_path / "out.jsonl"
    env = job_env(
        source="elasticsearch",
        es_url=es_url,
        es_source_index=source,
        es_source_start="latest",
        es_source_poll=0.1,
        sink="jsonl",
        output=out,
        dead_letter_path=tmp_path / "dead.jsonl",
        window_size=50,
        emit_every=50,
        summary="false",
    )
    job = Job(env, tmp_path / "job.log")
    try:
        job.start()
        wait_for("the start", lambda: "starting after _seq_no 199" in job.output(), 60)
        # Holes in the _seq_no sequence (a delete) are stepped over.
        hit = es_client.search(index=source, size=1, query={"match_all": {}})["hits"]["hits"][0]
        es_client.delete(index=source, id=hit["_id"])
        index_lines(es_client, source, lines[200:], chunk=100)
        wait_for(
            "200 records' documents",
            lambda: out.exists() and out.read_bytes().count(b"\n") >= 3 * 200 // 50,
            60,
        )
        time.sleep(0.5)
    finally:
        job.kill9()
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected = expected_run(lines[200:], window_size=50, emit_every=50, bounded=False)
    assert not compare(docs, expected.documents)


def test_a_missing_source_index_stops_the_job_naming_the_variable(
    es_url: str, es_index: IndexNameFactory, tmp_path: Path
) -> None:
    env = job_env(
        source="elasticsearch",
        es_url=es_url,
        es_source_index=es_index("none"),
        sink="jsonl",
        output=tmp_path / "out.jsonl",
    )
    job = Job(env, tmp_path / "job.log")
    job.start()
    assert job.wait(60) == [2]
    assert "CONFUSION_ES_SOURCE_INDEX" in job.output()
    assert "Traceback" not in job.output()


def test_concurrent_writers_on_one_shard_each_record_counted_once(
    es_url: str,
    es_client: Elasticsearch,
    es_index: IndexNameFactory,
    tmp_path: Path,
) -> None:
    """Four writers index into one shard at once while the job follows it closely (poll 10 ms,
    pages of 100): per model the count reaches exactly 6,000 and never goes past it. A cursor
    that reads up to ``max_seq_no`` without the refresh fails this; the narrower race of
    indexing threads finishing out of order is rare here, so passing does not prove that part
    (README explains why the safe point covers it)."""
    lines = sample_lines()
    source = es_index("raw")
    make_input(es_client, source)
    out = tmp_path / "out.jsonl"
    env = job_env(
        source="elasticsearch",
        es_url=es_url,
        es_source_index=source,
        es_source_poll=0.01,
        sink="jsonl",
        output=out,
        batch_size=100,
        dead_letter_path=tmp_path / "dead.jsonl",
        window_size=WINDOW,
        emit_every=EMIT,
        summary="false",
    )
    job = Job(env, tmp_path / "job.log")

    try:
        job.start()
        wait_for("the start", lambda: "no checkpoint" in job.output(), 60)
        writers = [BackgroundIndexer(es_client, source, lines[i::4], 0.0) for i in range(4)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.finish()
        wait_for(
            "every record",
            lambda: (
                job.assert_alive()
                or last_seq(out) == dict.fromkeys(("model1", "model2", "model3"), len(lines))
            ),
            60,
        )
        time.sleep(1.0)  # nothing more may come
    finally:
        job.kill9()
    assert last_seq(out) == dict.fromkeys(("model1", "model2", "model3"), len(lines))
    dead = tmp_path / "dead.jsonl"
    assert not dead.exists() or not dead.read_bytes()


@pytest.mark.slow
def test_three_shards_two_workers_killed_and_resumed_count_each_record_once(
    es_url: str,
    es_client: Elasticsearch,
    es_index: IndexNameFactory,
    tmp_path: Path,
) -> None:
    """Shards interleave, so windows depend on timing; the counts do not. After a SIGKILL in the
    middle and a resume (every shard from its own snapshot), each model has counted exactly
    6,000 records: none skipped, none twice (the file sink truncates to its snapshot)."""
    lines = sample_lines()
    source = es_index("raw")
    make_input(es_client, source, shards=3)
    out = tmp_path / "out.jsonl"
    recovery = tmp_path / "recovery"
    init_recovery(recovery)
    env = job_env(
        source="elasticsearch",
        es_url=es_url,
        es_source_index=source,
        es_source_poll=0.2,
        sink="jsonl",
        output=out,
        dead_letter_path=tmp_path / "dead.jsonl",
        window_size=WINDOW,
        emit_every=EMIT,
        summary="false",
    )
    job = Job(env, tmp_path / "job.log", recovery=recovery, workers=2)
    indexer = BackgroundIndexer(es_client, source, lines, RATE)
    want = dict.fromkeys(("model1", "model2", "model3"), len(lines))
    indexer.start()
    try:
        job.start()
        wait_for(
            "1,000 records per model",
            lambda: job.assert_alive() or sum(last_seq(out).values()) >= 3000,
            120,
        )
        wait_for("a committed snapshot of every shard", lambda: committed_shards(recovery) == 3, 60)
        time.sleep(0.5)  # into the next epoch, so the restart also has a tail to replay
        assert indexer.is_alive(), "records stopped before the kill; nothing to resume into"
        job.kill9()
        job.start()
        wait_for("every record", lambda: job.assert_alive() or last_seq(out) == want, 120)
        time.sleep(1.0)  # nothing more may come
    finally:
        job.kill9()
    indexer.finish()
    assert last_seq(out) == want
    second = job.output().split("=== start ")[2]
    assert len(re.findall(r"resuming at _seq_no \d+", second)) == 3, second[-2000:]
