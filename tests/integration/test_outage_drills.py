"""Outage drills against the real servers: Elasticsearch frozen then stopped, Kafka frozen
(SIGSTOP) then restarted keeping its data. Each must end with nothing lost and nothing counted
twice, and the log must say, once each, that the dependency is unreachable, how far behind the
job is while blocked, and when it came back.

Elasticsearch goes away through `FaultProxy` in front of the real node (freeze: requests are
read and never answered, like a SIGSTOPped node; stop: connections refused); Kafka is the
session's broker itself, frozen with SIGSTOP and restarted with ``scripts/services restart``.
These are the CI versions of ``scripts/drills`` (outages of ~15 s instead of 60 s).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from flows.connectors.elasticsearch.mapping import latest_index
from tests.integration.drills import (
    Sampler,
    lines_with,
    now,
    services,
    stamp_of,
    untimestamped,
    wait_line,
)
from tests.integration.pipeline import (
    BackgroundProducer,
    FaultProxy,
    IndexNameFactory,
    Job,
    TopicFactory,
    all_docs,
    count,
    history,
    init_recovery,
    job_env,
    periodic,
    produce,
    read_topic,
    recompute,
    sample_lines,
    wait_for,
    write_lines,
)

WINDOW = 500
EMIT = 100
RATE = 300
MODELS = ("model1", "model2", "model3")
# scripts/drills holds each outage at least this long (60 s); CI only until the job has said
# "still unreachable" (~15 s).
HOLD_S = float(os.environ.get("DRILL_HOLD_S", "0"))
Doc = dict[str, Any]


def hold(since: float, job: Job) -> None:
    """Keep the outage going until ``HOLD_S`` after ``since`` (scripts/drills only)."""
    if HOLD_S > 0:
        wait_for(f"{HOLD_S:.0f}s of outage", lambda: now() - since >= HOLD_S, HOLD_S + 10, 0.5)
        job.assert_alive()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Doc]:
    scratch = tmp_path_factory.mktemp("reference")
    docs = recompute(
        write_lines(scratch / "sample.jsonl", sample_lines()),
        scratch,
        window_size=WINDOW,
        emit_every=EMIT,
    )
    return periodic(docs, EMIT)


@pytest.mark.slow
def test_elasticsearch_frozen_then_stopped(
    kafka_bootstrap: str,
    es_url: str,
    es_client: Elasticsearch,
    topic: TopicFactory,
    es_index: IndexNameFactory,
    tmp_path: Path,
    reference: dict[str, Doc],
) -> None:
    name, index = topic(partitions=1), es_index()
    group = f"{name}-job"
    recovery = tmp_path / "recovery"
    init_recovery(recovery)
    with FaultProxy(es_url) as proxy:
        env = job_env(
            source="kafka",
            kafka_bootstrap=kafka_bootstrap,
            kafka_topic=name,
            kafka_group=group,
            sink="elasticsearch",
            es_url=proxy.url,
            es_index=index,
            es_max_backoff=2,
            window_size=WINDOW,
            emit_every=EMIT,
            batch_size=200,
            summary="false",
        )
        job = Job(env, tmp_path / "job.log", recovery=recovery, snapshot_s=1)
        # A backlog to start on, then records at RATE all through the outages.
        produce(kafka_bootstrap, name, sample_lines()[:600])
        producer = BackgroundProducer(kafka_bootstrap, name, sample_lines()[600:], rate=RATE)
        sampler = Sampler(job, kafka_bootstrap, group, name, 1)
        detected: list[float] = []
        outages: list[float] = []
        try:
            job.start()
            wait_for("10 documents", lambda: count(es_client, index) >= 10, 90)
            producer.start()
            sampler.start()
            for n, (cut, restore) in enumerate(
                [(proxy.freeze, proxy.thaw), (proxy.down, proxy.up)], start=1
            ):
                reports = len(lines_with(job, "Elasticsearch still unreachable"))
                cut_at = now()
                cut()
                line = wait_line(job, "Elasticsearch unreachable", n, 60)
                detected.append(stamp_of(line) - cut_at)
                wait_line(job, "Elasticsearch still unreachable", reports + 1, 60)
                hold(cut_at, job)
                restore()
                back = wait_line(job, "Elasticsearch reachable again", n, 60)
                outages.append(stamp_of(back) - cut_at)
            wait_for("all documents", lambda: count(es_client, index) >= len(reference), 120)
            job.assert_alive()
        finally:
            job.kill9()
            samples = sampler.stop()
    if producer.is_alive() or producer.error is not None:
        producer.finish()
    print(
        f"ES drill: detected after {[f'{d:.1f}s' for d in detected]} (freeze, stop); outages "
        f"{[f'{o:.1f}s' for o in outages]}; worst lag {samples.worst_lag} records, "
        f"worst RSS {samples.worst_rss_mib:.0f} MiB; first RSS {samples.rss_kib[0] / 1024:.0f} MiB"
    )
    output = job.output()
    # Once per outage, and the frozen node named long before the 30 s request timeout.
    assert len(lines_with(job, "Elasticsearch unreachable")) == 2, output[-3000:]
    assert len(lines_with(job, "Elasticsearch reachable again")) == 2
    assert detected[0] < 20, "a frozen node must be named before the request times out"
    still = lines_with(job, "Elasticsearch still unreachable")
    assert all("documents in" in line and "waiting" in line for line in still), still
    assert not lines_with(job, "Kafka (source) unreachable"), "a paused source is not an outage"
    assert not untimestamped(output)
    # The job kept its place: exactly the uninterrupted run's documents.
    got = history(es_client, index)
    assert got.keys() == reference.keys()
    for key, doc in reference.items():
        assert got[key] == doc, f"document {key} differs from the uninterrupted run"
    latest = all_docs(es_client, latest_index(index))
    assert {d["seq"] for d in latest.values()} == {6000} and latest.keys() == set(MODELS)


def bad_lines(lines: list[bytes], every: int) -> tuple[list[bytes], set[int]]:
    """``lines`` with a record that is no JSON after every ``every``-th; the bad offsets."""
    out: list[bytes] = []
    bad: set[int] = set()
    for i, line in enumerate(lines):
        out.append(line)
        if (i + 1) % every == 0:
            bad.add(len(out))
            out.append(b"not json %d" % i)
    return out, bad


@pytest.mark.slow
def test_kafka_frozen_then_restarted_keeping_its_data(
    kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    broker = int(services("pid", "kafka").strip())
    bootstrap_of_services = services("status", "kafka")
    assert kafka_bootstrap in bootstrap_of_services, (
        f"{kafka_bootstrap} is not the broker of scripts/services ({bootstrap_of_services})"
    )
    lines, bad = bad_lines(sample_lines()[:3000], every=250)
    half = len(lines) // 2
    expected = periodic(
        recompute(
            write_lines(tmp_path / "all.jsonl", lines),
            tmp_path,
            window_size=WINDOW,
            emit_every=EMIT,
        ),
        EMIT,
    )
    name, dlq = topic(partitions=1), topic(partitions=1)
    out = tmp_path / "docs.jsonl"
    env = job_env(
        source="kafka",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=name,
        dlq_topic=dlq,
        sink="jsonl",
        output=out,
        alerts_output=tmp_path / "alerts.jsonl",
        window_size=WINDOW,
        emit_every=EMIT,
        batch_size=200,
        summary="false",
    )
    job = Job(env, tmp_path / "job.log")

    def documents() -> int:
        job.assert_alive()
        return len(out.read_bytes().splitlines()) if out.exists() else 0

    produce(kafka_bootstrap, name, lines[:half])
    first_half_docs = sum(1 for d in expected.values() if d["seq"] <= 1400)
    frozen_for = 0.0
    try:
        job.start()
        wait_for("the first half's documents", lambda: documents() >= first_half_docs, 90)
        # 1. Frozen: the TCP connection stays up, nothing answers.
        os.kill(broker, signal.SIGSTOP)
        frozen_at = now()
        try:
            line = wait_line(job, "Kafka (source) unreachable", 1, 60)
            detected = stamp_of(line) - frozen_at
            wait_line(job, "Kafka (source) still unreachable", 1, 60)
            hold(frozen_at, job)
        finally:
            os.kill(broker, signal.SIGCONT)
            frozen_for = now() - frozen_at
        wait_line(job, "Kafka (source) reachable again", 1, 60)
        # 2. Restarted (SIGTERM, start again on the same data) while the job runs.
        restart = threading.Thread(target=services, args=("restart", "kafka"))
        restart.start()
        wait_line(job, "Kafka (source) unreachable", 2, 60)
        restart.join(180)
        wait_line(job, "Kafka (source) reachable again", 2, 120)
        # The second half, dead letters included, after the restart: nothing lost.
        produce(kafka_bootstrap, name, lines[half:])
        wait_for("all documents", lambda: documents() >= len(expected), 90)
        letters = read_topic(kafka_bootstrap, dlq)

        def all_letters() -> bool:
            nonlocal letters
            letters = read_topic(kafka_bootstrap, dlq)
            return len({m.value() for m in letters}) >= len(bad)

        wait_for("every dead letter", all_letters, 60, every=0.5)
        job.assert_alive()
    finally:
        job.kill9()
    print(f"Kafka drill: freeze of {frozen_for:.1f}s detected after {detected:.1f}s")
    output = job.output()
    got = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    ids = [f"{d['model']}/{d['window']['kind']}/{d['seq']}" for d in got]
    assert len(ids) == len(set(ids)), "a document was written twice"
    assert {
        i: {k: v for k, v in d.items() if k != "emitted_at"} for i, d in zip(ids, got, strict=True)
    } == expected
    offsets = {int(dict(m.headers() or [])["source_offset"].decode()) for m in letters}
    assert offsets == bad
    assert len(lines_with(job, "Kafka (source) unreachable")) == 2, output[-3000:]
    assert len(lines_with(job, "Kafka (source) reachable again")) == 2
    assert detected < 20, "a frozen broker must be named within seconds"
    assert "confusion.librdkafka" in output, "librdkafka's own lines go through the job's logger"
    assert not untimestamped(output)


@pytest.mark.slow
def test_the_dead_letter_producer_says_when_kafka_is_away_and_back(
    kafka_bootstrap: str, topic: TopicFactory
) -> None:
    """The real producer of the dead-letter sink, the broker frozen while a letter waits."""
    from flows.connectors.kafka.dead_letters import DeadLetterTopicSink
    from flows.parsing.batches import DeadLetter

    lines: list[str] = []
    collect = logging.Handler()
    collect.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("confusion.health").addHandler(collect)
    broker = int(services("pid", "kafka").strip())
    dlq = topic()
    part = DeadLetterTopicSink(dlq, {"bootstrap.servers": kafka_bootstrap}).build("dl", 0, 1)
    letter = DeadLetter(b"{broken", "not valid JSON: test", "src/0", 7)
    part.write_batch([("src/0", letter)])  # connected, metadata known
    name = f"Kafka (dead-letter topic {dlq})"

    def said(text: str) -> int:
        return sum(1 for line in list(lines) if line.startswith(f"{name} {text}"))

    writer = threading.Thread(target=part.write_batch, args=([("src/0", letter)],))
    os.kill(broker, signal.SIGSTOP)
    try:
        writer.start()
        wait_for("the dead-letter outage", lambda: said("unreachable") == 1, 30)
        wait_for("a progress line", lambda: said("still unreachable") >= 1, 30)
    finally:
        os.kill(broker, signal.SIGCONT)
    writer.join(60)
    assert not writer.is_alive()
    assert said("reachable again") == 1 and said("unreachable") == 1
    assert "1 dead letters waiting" in next(
        line for line in lines if line.startswith(f"{name} still unreachable")
    )
    logging.getLogger("confusion.health").removeHandler(collect)
    part.close()
    assert [m.value() for m in read_topic(kafka_bootstrap, dlq)] == [b"{broken", b"{broken"]
