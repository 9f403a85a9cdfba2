"""``confusion-produce``: load prediction records into a Kafka topic (demos, tests, benchmarks).

    confusion-produce data/predictions.jsonl --topic predictions
    confusion-produce --demo 100000 --topic predictions --rate 5000 --partitions 3 --spread
    confusion-produce --sample --topic predictions

Every record goes to partition 0 by default. A Kafka topic only orders messages within a
partition, and the job counts each model's records in read order, so one partition is what keeps
a file's global order and gives exactly the results of ``CONFUSION_SOURCE=file``. ``--spread``
deals records round-robin over all partitions (more parallelism, order kept only per partition;
round-robin rather than Kafka's sticky partitioner, which sends whole bursts to one partition).
The producer is idempotent, so broker retries never reorder or duplicate.

Exits 0 once every record is acknowledged, 1 if any delivery failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from flows.connectors.kafka.config import (
    client_config,
    describe,
    is_security_error,
    metadata_or_refusal,
)
from flows.errors import ConfigError

DEMO_CHUNK = 10_000


def read_lines(path: str) -> Iterator[bytes]:
    """Non-blank lines of a JSON-lines file (``-`` for stdin), bytes as they are, no newline."""
    with (
        open(sys.stdin.fileno(), "rb", closefd=False) if path == "-" else Path(path).open("rb")
    ) as stream:
        for line in stream:
            value = line.rstrip(b"\r\n")
            if value.strip():
                yield value


def demo_records(total: int, seed: int) -> Iterator[bytes]:
    from flows.demo import demo_lines  # numpy: imported only when --demo asks for it

    for start in range(0, total, DEMO_CHUNK):
        yield from demo_lines(seed, total, start, start + DEMO_CHUNK)


def sample_records(seed: int | None) -> Iterator[bytes]:
    from flows.demo import SAMPLE_SEED, sample_lines  # numpy: only when --sample asks for it

    return iter(sample_lines(SAMPLE_SEED if seed is None else seed))


class Pacer:
    """Holds a steady rate (records/s) without drifting; ``rate <= 0`` means no limit."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()

    def wait(self, sent: int) -> None:
        if self.rate > 0:
            ahead = self.start + sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


class Deliveries:
    """Counts acknowledgements and failures (with the first few reasons)."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.reasons: list[str] = []

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.ok += 1
            return
        self.failed += 1
        if len(self.reasons) < 5:
            self.reasons.append(f"partition {msg.partition()}: {err.str()}")


def producer_config(args: argparse.Namespace) -> dict[str, Any]:
    """The job's client settings (`client_config`), with ``--bootstrap`` for the bootstrap."""
    file = os.environ.get("CONFUSION_KAFKA_CONFIG_FILE")
    config: dict[str, Any] = client_config(Path(file) if file else None, args.bootstrap)
    if not config.get("bootstrap.servers"):
        raise ConfigError("--bootstrap (or CONFUSION_KAFKA_BOOTSTRAP) is required")
    return config


def ensure_topic(
    config: dict[str, Any],
    topic: str,
    partitions: int,
    replication: int,
    wanted_partition: int | None,
) -> int:
    """Create ``topic`` if missing; return its partition count."""
    refused: list[KafkaError] = []

    def on_error(err: KafkaError) -> None:
        if is_security_error(err):
            refused.append(err)

    admin_config: dict[str, Any] = {**config, "error_cb": on_error}
    admin = AdminClient(admin_config)
    # All topics: asking for one would auto-create it with the broker's partition count.
    meta = metadata_or_refusal(admin, refused, config, 30).topics.get(topic)
    if meta is None or meta.error is not None:
        new = NewTopic(topic, num_partitions=partitions, replication_factor=replication)
        try:
            admin.create_topics([new], operation_timeout=30)[topic].result(timeout=60)
            print(
                f"confusion-produce: created topic {topic} with {partitions} partitions",
                file=sys.stderr,
            )
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        count = partitions
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until every partition has a leader
            meta = admin.list_topics(timeout=10).topics.get(topic)
            if (
                meta is not None
                and meta.error is None
                and len(meta.partitions) == partitions
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                break
            time.sleep(0.1)
    else:
        count = len(meta.partitions)
    if wanted_partition is not None and not 0 <= wanted_partition < count:
        raise ConfigError(
            f"--partition {wanted_partition} does not exist: topic {topic} has {count} partitions"
        )
    return count


def produce(
    producer: Producer,
    topic: str,
    values: Iterator[bytes],
    partitions: Sequence[int],
    rate: float,
    stream: TextIO,
    every: float = 1.0,
) -> Deliveries:
    """Send every value, round-robin over ``partitions``, paced, with a progress line; wait for
    all delivery reports."""
    deliveries = Deliveries()
    pacer = Pacer(rate)
    tty = stream.isatty()
    sent = 0
    started = last = time.monotonic()
    for sent, value in enumerate(values, start=1):
        partition = partitions[(sent - 1) % len(partitions)]
        while True:
            try:
                producer.produce(topic, value, partition=partition, on_delivery=deliveries)
                break
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
        pacer.wait(sent)
        now = time.monotonic()
        if now - last >= every:
            last = now
            line = (
                f"confusion-produce: {sent:,} sent, {deliveries.ok:,} acknowledged, "
                f"{sent / (now - started):,.0f} rec/s"
            )
            stream.write(f"\r{line}\033[K" if tty else line + "\n")
            stream.flush()
    while producer.flush(5.0) > 0:
        stream.write(f"confusion-produce: waiting for {len(producer):,} acknowledgements\n")
    elapsed = time.monotonic() - started
    if tty:
        stream.write("\r\033[K")
    stream.write(
        f"confusion-produce: {deliveries.ok:,} records written to {topic} in "
        f"{elapsed:.1f}s ({deliveries.ok / max(elapsed, 1e-9):,.0f} rec/s), "
        f"{deliveries.failed:,} failed\n"
    )
    for reason in deliveries.reasons:
        stream.write(f"confusion-produce: failure: {reason}\n")
    return deliveries


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="confusion-produce", description="Load prediction records (JSON lines) into Kafka."
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", help="JSON-lines file, one record per line (- = stdin)")
    what.add_argument("--demo", type=int, metavar="N", help="N records of the built-in demo")
    what.add_argument(
        "--sample",
        action="store_true",
        help="the 6,000-record sample stream (2 classes, model2 drifts half way)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed of --demo [2026] or --sample [flows.demo.SAMPLE_SEED]"
    )
    parser.add_argument(
        "--topic",
        default=os.environ.get("CONFUSION_KAFKA_TOPIC", ""),
        help="topic [$CONFUSION_KAFKA_TOPIC, first of the list]",
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("CONFUSION_KAFKA_BOOTSTRAP"),
        help="host:port[,...] [$CONFUSION_KAFKA_BOOTSTRAP]",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="records per second; 0 = as fast as possible [0]"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--partition",
        type=int,
        default=0,
        help="partition to write to, keeping the input's order [0]",
    )
    where.add_argument(
        "--spread", action="store_true", help="deal records round-robin over all partitions"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="partitions of the topic if it has to be created [1]",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=-1,
        help="replication of a created topic; -1 = broker default [-1]",
    )
    args = parser.parse_args(argv)
    args.topic = args.topic.split(",")[0].strip()
    if not args.topic:
        parser.error("--topic (or CONFUSION_KAFKA_TOPIC) is required")
    if args.demo is not None and args.demo < 1:
        parser.error("--demo needs N >= 1")
    if args.partitions < 1:
        parser.error("--partitions needs N >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    partition = None if args.spread else args.partition
    try:
        config = producer_config(args)
        count = ensure_topic(
            config, args.topic, args.partitions, args.replication_factor, partition
        )
    except (ConfigError, KafkaException, OSError) as exc:
        print(f"confusion-produce: {exc}", file=sys.stderr)
        return 2
    print(
        f"confusion-produce: writing to {args.topic} "
        f"({'all partitions' if partition is None else f'partition {partition}'}) with "
        f"{describe(config)}",
        file=sys.stderr,
    )
    producer = Producer({"enable.idempotence": True, "linger.ms": 20, **config})
    values: Iterator[bytes]
    if args.demo:
        values = demo_records(args.demo, 2026 if args.seed is None else args.seed)
    elif args.sample:
        values = sample_records(args.seed)
    else:
        values = read_lines(args.file)
    try:
        targets = list(range(count)) if partition is None else [partition]
        deliveries = produce(producer, args.topic, values, targets, args.rate, sys.stderr)
    except OSError as exc:
        print(f"confusion-produce: {exc}", file=sys.stderr)
        return 2
    return 1 if deliveries.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
