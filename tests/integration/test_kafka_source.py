"""The Kafka source against the real broker: batches, offsets, resume, start, end, errors, lag."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from flows.connectors.kafka.source import KafkaBatchSource, kafka_source
from flows.errors import ConfigError
from flows.parsing.batches import RawBatch
from flows.settings import Settings
from flows.telemetry import Heartbeat
from tests.integration.pipeline import TopicFactory, free_port, produce, wait_for

T0 = 1_795_341_600_000  # 2026-11-22T10:00:00Z


def poll(part: Any, values: int, timeout: float = 30.0) -> list[list[RawBatch]]:
    """Every non-empty poll until ``values`` messages have come (or StopIteration)."""
    polls: list[list[RawBatch]] = []
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < values:
        assert time.monotonic() < deadline, f"only {seen} of {values} messages arrived"
        batch = part.next_batch()
        if batch:
            polls.append(batch)
            seen += sum(len(b.values) for b in batch)
    return polls


def source_for(bootstrap: str, topic: str, **kwargs: Any) -> KafkaBatchSource:
    return KafkaBatchSource([topic], {"bootstrap.servers": bootstrap}, **kwargs)


def test_one_raw_batch_per_poll_then_resume_from_the_snapshot(
    kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    name = topic()
    values: list[bytes | None] = [b'{"n": %d}' % i for i in range(50)]
    values[10] = None  # a tombstone: must reach the parser (and the dead letters) as b""
    produce(kafka_bootstrap, name, values, timestamps=[T0 + i for i in range(50)])

    beat = tmp_path / "alive"
    source = source_for(kafka_bootstrap, name, batch_size=20, heartbeat=Heartbeat(beat, every=0.0))
    assert source.list_parts() == [f"0-{name}"]
    part = source.build_part("read", f"0-{name}", None)
    polls = poll(part, 50)
    assert all(len(batch) == 1 for batch in polls)  # ONE item per poll, not one per message
    batches = [batch[0] for batch in polls]
    assert all(len(b.values) <= 20 for b in batches)
    assert {b.origin for b in batches} == {f"{name}/0"}
    assert all(b.headers == {"topic": name, "partition": "0"} for b in batches)
    assert [p for b in batches for p in b.positions] == list(range(50))
    assert [t for b in batches for t in b.fallback_ts] == [T0 + i for i in range(50)]
    got = [v for b in batches for v in b.values]
    assert got == [b"" if v is None else v for v in values]
    assert part.snapshot() == 50

    beat.unlink()
    assert part.next_batch() == []  # an idle poll still beats
    assert beat.exists()
    part.close()

    produce(kafka_bootstrap, name, [b'{"n": 50}', b'{"n": 51}'])
    resumed = source.build_part("read", f"0-{name}", 50)
    batches = [batch[0] for batch in poll(resumed, 2)]
    assert [p for b in batches for p in b.positions] == [50, 51]
    assert resumed.snapshot() == 52
    resumed.close()


def test_start_latest_skips_what_is_already_there(
    kafka_bootstrap: str, topic: TopicFactory
) -> None:
    name = topic()
    produce(kafka_bootstrap, name, [b"old"] * 10)
    part = source_for(kafka_bootstrap, name, start="latest").build_part("read", f"0-{name}", None)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # let the consumer find the end before new data comes
        assert part.next_batch() == []
        time.sleep(0.05)
    assert part.snapshot() == 10  # the end as a real offset: a restart misses nothing
    produce(kafka_bootstrap, name, [b"new"] * 3)
    batches = [batch[0] for batch in poll(part, 3)]
    assert [p for b in batches for p in b.positions] == [10, 11, 12]
    assert part.snapshot() == 13
    part.close()


def test_stop_at_end_ends_the_partition(kafka_bootstrap: str, topic: TopicFactory) -> None:
    name = topic()
    produce(kafka_bootstrap, name, [b"x"] * 30)
    part = source_for(kafka_bootstrap, name, stop_at_end=True, batch_size=7).build_part(
        "read", f"0-{name}", None
    )
    seen = 0
    deadline = time.monotonic() + 30
    with pytest.raises(StopIteration):
        while time.monotonic() < deadline:
            seen += sum(len(b.values) for b in part.next_batch())
    assert seen == 30


def test_several_topics_and_a_missing_one(kafka_bootstrap: str, topic: TopicFactory) -> None:
    first, second = topic(partitions=2), topic()
    settings = Settings(
        source="kafka", kafka_bootstrap=kafka_bootstrap, kafka_topic=f"{first}, {second}"
    )
    parts = kafka_source(settings, Heartbeat(None)).list_parts()
    assert parts == [f"0-{first}", f"1-{first}", f"0-{second}"]

    missing = f"{second}-missing"
    with pytest.raises(ConfigError, match="does not exist"):
        source_for(kafka_bootstrap, missing).list_parts()
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert missing not in topics  # asking did not auto-create it


def test_unreachable_broker_is_logged_and_counted_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    part = source_for(dead, "nowhere").build_part("read", "0-nowhere", None)

    def errors() -> float:
        return sum(
            REGISTRY.get_sample_value(
                "confusion_kafka_errors_total", {"client": "consumer", "code": code}
            )
            or 0.0
            for code in ("_TRANSPORT", "_ALL_BROKERS_DOWN")
        )

    before = errors()
    with caplog.at_level(logging.WARNING, "confusion"):
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert part.next_batch() == []
            time.sleep(0.02)
    assert errors() > before
    assert "consumer of nowhere/0" in caplog.text
    part.close()


def test_consumer_lag_gauge_and_monitoring_group(kafka_bootstrap: str, topic: TopicFactory) -> None:
    name = topic()
    produce(kafka_bootstrap, name, [b"x"] * 40)
    group = f"{name}-monitor"
    source = source_for(kafka_bootstrap, name, group=group, batch_size=40)
    part = source.build_part("lag-step", f"0-{name}", None)
    poll(part, 40)
    labels = {"step_id": "lag-step", "topic": name, "partition": "0"}

    def lag() -> float | None:
        part.next_batch()  # statistics arrive through the consumer's polls
        return REGISTRY.get_sample_value("bytewax_kafka_consumer_lag", labels)

    wait_for("the lag gauge to read 0", lambda: lag() == 0, timeout=10, every=0.1)
    assert part.snapshot() == 40

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:

        def committed() -> int:
            part.next_batch()  # serves the asynchronous commit
            return int(consumer.committed([TopicPartition(name, 0)], 10)[0].offset)

        wait_for("the snapshot offset to be committed", lambda: committed() == 40, timeout=10)
    finally:
        consumer.close()
        part.close()


def test_lag_from_statistics(kafka_bootstrap: str, topic: TopicFactory) -> None:
    """Lag = end of partition - next offset; before the first message, from the low mark."""
    name = topic()
    part = source_for(kafka_bootstrap, name).build_part("lag-math", f"0-{name}", None)
    labels = {"step_id": "lag-math", "topic": name, "partition": "0"}

    def stats(low: int, end: int) -> str:
        body = {"topics": {name: {"partitions": {"0": {"lo_offset": low, "ls_offset": end}}}}}
        return orjson.dumps(body).decode()

    part._process_stats(stats(5, 25))  # not started: the whole retained partition
    assert REGISTRY.get_sample_value("bytewax_kafka_consumer_lag", labels) == 20
    part._offset = 0  # offset 0 counts too (Bytewax's own gauge skips it)
    part._process_stats(stats(0, 25))
    assert REGISTRY.get_sample_value("bytewax_kafka_consumer_lag", labels) == 25
    part._process_stats('{"topics": {}}')  # stats before the partition is known: ignored
    part.close()
