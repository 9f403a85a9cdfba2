"""Hostile messages on a real topic: tombstones, empty values, a message near the broker's size
limit, batches compressed with every codec, keys and headers of any bytes. Each is counted or
dead-lettered with a reason, the job never stops, and a dead letter too large for the
dead-letter topic still leaves a truncated copy with its original size and offset."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main
from confluent_kafka import KafkaError, Message, Producer

from flows.confusion import build_flow
from flows.connectors.kafka.dead_letters import TRUNCATED_BYTES
from flows.settings import Settings
from tests.integration.pipeline import (
    TopicFactory,
    periodic,
    read_topic,
    recompute,
    sample_lines,
    write_lines,
)

CODECS = ("gzip", "snappy", "lz4", "zstd")
NEAR_LIMIT = 1_000_000  # the broker's message.max.bytes is 1,048,588 by default
DLQ_LIMIT = 200_000  # the dead-letter topic's max.message.bytes in this test


def send(bootstrap: str, topic: str, messages: list[dict[str, Any]], **config: Any) -> None:
    failures: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.str())

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "message.max.bytes": 1_100_000, **config}
    )
    for message in messages:
        producer.produce(topic, partition=0, on_delivery=report, **message)
    assert producer.flush(30) == 0
    assert not failures, failures


def test_hostile_messages_are_counted_or_dead_lettered(
    kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    rng = random.Random(18)
    good = sample_lines()[:1200]
    source = topic()
    dlq = topic(config={"max.message.bytes": str(DLQ_LIMIT)})
    counted: list[bytes] = []  # the records that must count, in topic order
    bad: dict[int, str] = {}  # offset -> the start of the reason its dead letter must give
    offset = 0

    def put(values: list[dict[str, Any]], **config: Any) -> None:
        nonlocal offset
        send(kafka_bootstrap, source, values, **config)
        offset += len(values)

    # Good records in batches of each codec, keys and headers of random bytes on every one.
    chunks = [good[i : i + 300] for i in range(0, 1200, 300)]
    for codec, chunk in zip(CODECS, chunks, strict=True):
        put(
            [
                {
                    "value": line,
                    "key": rng.randbytes(rng.randrange(0, 40)),
                    "headers": [(f"h{i}", rng.randbytes(8)), ("\x00\xff", b"")],
                }
                for i, line in enumerate(chunk)
            ],
            **{"compression.type": codec},
        )
        counted += chunk
        # Hostile values between the codecs' batches.
        hostile = [
            ({"value": None, "key": b"\x00tomb"}, "empty value"),  # a tombstone
            ({"value": b""}, "empty value"),
            ({"value": b"\xff\xfe\x00garbage", "key": rng.randbytes(16)}, "not valid UTF-8"),
        ]
        for message, reason in hostile:
            bad[offset] = reason
            put([message])
    # Near the broker's limit: too large for the dead-letter topic.
    big = b"x" * NEAR_LIMIT
    bad[offset] = "not valid JSON"
    big_offset = offset
    put([{"value": big}])

    out = tmp_path / "docs.jsonl"
    settings = Settings(
        source="kafka",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=source,
        kafka_stop_at_end=True,
        dlq_topic=dlq,
        sink="jsonl",
        output=out,
        window_size=300,
        emit_every=100,
        progress="off",
        summary=False,
    )
    run_main(build_flow(settings))

    # Every good record counted, exactly as the same records from a file.
    got = {
        f"{d['model']}/count/{d['seq']}": {k: v for k, v in d.items() if k != "emitted_at"}
        for d in map(orjson.loads, out.read_bytes().splitlines())
    }
    reference = recompute(
        write_lines(tmp_path / "good.jsonl", counted), tmp_path, window_size=300, emit_every=100
    )
    assert periodic(got, 100) == periodic(reference, 100)

    letters = read_topic(kafka_bootstrap, dlq)
    by_offset = {
        int(dict(m.headers() or [])["source_offset"]): (
            m,
            {k: v.decode() for k, v in m.headers() or []},
        )
        for m in letters
    }
    assert set(by_offset) == set(bad), "one dead letter per hostile message"
    for position, prefix in bad.items():
        assert by_offset[position][1]["reason"].startswith(prefix), by_offset[position][1]
    message, headers = by_offset[big_offset]
    assert headers["truncated"] == "true" and headers["original_size"] == str(NEAR_LIMIT)
    assert message.value() == big[:TRUNCATED_BYTES]
