"""Kafka in: prediction records from topics, one `RawBatch` per partition poll.

The source keeps Bytewax's Kafka connector underneath (its partition class, partition names,
snapshots and lag gauge) but each poll hands the dataflow ONE `RawBatch` (Bytewax costs a few
microseconds per item, which would dominate a per-message stream). Offsets still live only in
Bytewax snapshots: the consumer uses
``assign()``, never joins a group and never reads committed offsets back, so a resume restores the
offsets of the same checkpoint as the window state. Transient broker errors are logged and
counted, never raised: a broker restart must not crash the job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE, _KafkaSourcePartition
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import TopicMetadata

from flows.connectors.kafka.config import (
    METADATA_TIMEOUT_S,
    client_config,
    count_error,
    describe,
    is_security_error,
    metadata_or_refusal,
)
from flows.connectors.outage import STALL_S, outage, source_lag
from flows.connectors.retry import Backoff
from flows.errors import ConfigError
from flows.logs import librdkafka_logger
from flows.output.documents import now_ms
from flows.parsing.batches import RawBatch
from flows.settings import Settings
from flows.telemetry import Heartbeat, job_logger

# After an empty poll the partition sleeps instead of spinning: 5 ms, doubling per empty poll up
# to 100 ms, so an idle topic costs little CPU and a busy one adds at most a few ms of latency.
IDLE_WAIT_MS = (5, 100)
WARN_EVERY_S = 10.0  # the same Kafka error code is logged at most this often per partition


log = job_logger("kafka")

# Client errors that mean "the broker cannot be reached" (not "this request was refused").
UNREACHABLE_CODES = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._TIMED_OUT,
}
_last_read = [time.monotonic()]  # when any partition of this process last read a message


def _source_behind() -> str:
    lag = source_lag()
    idle = time.monotonic() - _last_read[0]
    return f"nothing read for {idle:.0f}s" + (
        f"; lag at last report {lag:,} records" if lag is not None else ""
    )


def broker_trouble(stats: dict[str, Any], topic: str, part_idx: int) -> str | None:
    """Why the leader of ``topic``/``part_idx`` is unreachable per librdkafka's statistics, or
    None when it answers. A frozen broker keeps its TCP connection "UP": what gives it away is a
    request waiting (``waitresp_cnt``) with nothing received for `STALL_S` (``rxidle``, in µs);
    a consumer paused by backpressure has no request waiting, so it is not mistaken for one."""
    try:
        leader = int(stats["topics"][topic]["partitions"][str(part_idx)]["leader"])
    except (KeyError, ValueError, TypeError):
        return None  # not known yet
    if leader < 0:
        return f"partition {topic}/{part_idx} has no leader"
    for broker in stats.get("brokers", {}).values():
        if broker.get("nodeid") != leader:
            continue
        name = broker.get("nodename") or broker.get("name")
        if broker.get("state") != "UP":
            return f"broker {name} is {broker.get('state')}"
        idle_us = int(broker.get("rxidle", -1))
        if int(broker.get("waitresp_cnt", 0)) > 0 and idle_us > STALL_S * 1e6:
            return f"broker {name} has not answered for {idle_us / 1e6:.0f}s"
        return None
    return None


class _RawBatchPartition(_KafkaSourcePartition):
    """One topic partition; each poll returns at most one `RawBatch` of its messages.

    Bytewax's partition keeps the consumer set-up (``assign()`` at the snapshot offset), the lag
    gauge and the snapshot (the next offset); `next_batch` is replaced because Bytewax's yields
    one item per message and counts an error report's offset as progress.
    """

    def __init__(
        self,
        step_id: str,
        config: dict[str, Any],
        topic: str,
        part_idx: int,
        starting_offset: int,
        resume_state: int | None,
        batch_size: int,
        heartbeat: Heartbeat,
        commit_to_group: bool,
    ) -> None:
        self._fatal: KafkaError | None = None
        self._warned: dict[int, tuple[float, int]] = {}  # error code -> (last logged, since)
        self._origin = f"{topic}/{part_idx}"
        self._outage = outage("Kafka (source)", _source_behind)
        config["error_cb"] = self._on_error
        config["logger"] = librdkafka_logger()
        super().__init__(
            step_id,
            config,
            topic,
            part_idx,
            starting_offset,
            resume_state,
            batch_size,
            raise_on_errors=False,
        )
        self._headers = {"topic": topic, "partition": str(part_idx)}
        self._heartbeat = heartbeat
        self._wake_at: datetime | None = None
        self._idle_ms = 0
        self._commit_to_group = commit_to_group
        if self._offset == OFFSET_END:
            self._pin_end()
        self._committed = self._offset

    def _pin_end(self) -> None:
        """Turn "the end" into the offset it is now, so the next snapshot holds a real offset.

        A snapshot of the logical end would make a restart skip whatever arrived while the job
        was down; if the broker cannot say now, the logical end stays (and a warning says so).
        """
        part = TopicPartition(self._topic, self._part_idx)
        try:
            _low, high = self._consumer.get_watermark_offsets(part, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            log.warning(
                "partition %s: end offset unknown (%s); starting at the logical end",
                self._origin,
                exc.args[0].str(),
            )
            return
        self._offset = high
        self._consumer.assign([TopicPartition(self._topic, self._part_idx, high)])

    def _on_error(self, err: KafkaError) -> None:
        # Client-level errors (broker down, auth, ...): librdkafka retries on its own.
        count_error("consumer", err)
        if err.fatal():
            self._fatal = err
        if err.code() in UNREACHABLE_CODES:
            self._outage.down(self._origin, err.str())
        self._warn(err, f"consumer of {self._origin}")

    def _warn(self, err: KafkaError, where: str) -> None:
        """Log an error, each code at most every `WARN_EVERY_S` (a down broker repeats fast)."""
        now = time.monotonic()
        last, suppressed = self._warned.get(err.code(), (-WARN_EVERY_S, 0))
        if now - last < WARN_EVERY_S:
            self._warned[err.code()] = (last, suppressed + 1)
            return
        self._warned[err.code()] = (now, 0)
        more = f"; {suppressed} more since the last report" if suppressed else ""
        log.warning("%s: %s (%s%s)", where, err.str(), err.name(), more)

    def _process_stats(self, json_stats: str) -> None:
        """Feed ``bytewax_kafka_consumer_lag`` (records between our position and the end)."""
        try:
            everything = json.loads(json_stats)
            trouble = broker_trouble(everything, self._topic, self._part_idx)
            if trouble is not None:
                self._outage.down(self._origin, trouble)
            elif "brokers" in everything:
                self._outage.up(self._origin)
            stats = everything["topics"][self._topic]["partitions"][str(self._part_idx)]
            end, low = int(stats["ls_offset"]), int(stats["lo_offset"])
        except (KeyError, ValueError, TypeError):
            return  # the partition's first stats may arrive before it is known
        if end < 0:
            return
        if self._offset >= 0:
            lag = end - self._offset
        elif self._offset == OFFSET_BEGINNING and low >= 0:
            lag = end - low
        else:
            lag = 0
        BYTEWAX_CONSUMER_LAG_GAUGE.labels(**self._metrics_labels).set(max(lag, 0))

    def next_batch(self) -> list[RawBatch]:  # type: ignore[override]
        self._heartbeat.beat()
        if self._fatal is not None:  # librdkafka gave up on this client: restart the job
            raise KafkaException(self._fatal)
        if self._eof:
            raise StopIteration
        try:
            msgs = self._consumer.consume(self._batch_size, 0.001)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            self._on_error(err)
            msgs = []
        values: list[bytes] = []
        stamps: list[int] = []
        offsets: list[int] = []
        arrival = 0
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof = True  # emit what we have; StopIteration on the next poll
                    break
                count_error("consumer", err)
                self._warn(err, f"consuming {self._origin}")
                continue
            kind, stamp = msg.timestamp()
            if kind == TIMESTAMP_NOT_AVAILABLE or stamp < 0:
                arrival = arrival or now_ms()
                stamp = arrival
            value = msg.value()
            values.append(b"" if value is None else value)  # null value: a dead letter
            stamps.append(stamp)
            offsets.append(cast(int, msg.offset()))
        if not offsets:
            self._idle_ms = min(max(self._idle_ms * 2, IDLE_WAIT_MS[0]), IDLE_WAIT_MS[1])
            self._wake_at = datetime.now(UTC) + timedelta(milliseconds=self._idle_ms)
            return []
        self._idle_ms = 0
        self._wake_at = None
        self._outage.up(self._origin)
        _last_read[0] = time.monotonic()
        self._offset = offsets[-1] + 1
        return [RawBatch(values, stamps, self._origin, offsets, self._headers)]

    def next_awake(self) -> datetime | None:
        return self._wake_at

    def close(self) -> None:
        self._outage.forget(self._origin)  # a closed partition holds no outage open
        super().close()

    def snapshot(self) -> int | None:
        """The next offset to read; also committed to the monitoring group when one is set.

        The commit is asynchronous and informational: it is never read back (resume uses this
        snapshot), it only lets standard tools (``kafka-consumer-groups``, Burrow) show lag.
        """
        offset = self._offset
        if self._commit_to_group and offset >= 0 and offset != self._committed:
            try:
                self._consumer.commit(
                    offsets=[TopicPartition(self._topic, self._part_idx, offset)], asynchronous=True
                )
                self._committed = offset
            except KafkaException as exc:
                self._on_error(exc.args[0])
        return offset


class KafkaBatchSource(FixedPartitionedSource[RawBatch, int | None]):
    """Bytewax's Kafka source, yielding one `RawBatch` per partition poll.

    Partition names (``"<partition>-<topic>"``) and snapshots (the next offset) are those of
    Bytewax's `KafkaSource`, so a checkpoint written by either can be resumed. Kafka partitions
    are the unit of parallelism: keep at least as many partitions as workers in total, or some
    workers read nothing.
    """

    def __init__(
        self,
        topics: list[str],
        config: Mapping[str, str],
        *,
        start: str = "earliest",
        batch_size: int = 1000,
        stop_at_end: bool = False,
        heartbeat: Heartbeat | None = None,
        group: str | None = None,
    ) -> None:
        self.topics = list(topics)
        self.config = dict(config)
        self.start = start
        self.batch_size = batch_size
        self.stop_at_end = stop_at_end
        self.heartbeat = heartbeat or Heartbeat(None)
        self.group = group

    def __repr__(self) -> str:
        return (
            f"KafkaBatchSource(topics={self.topics}, start={self.start}, "
            f"config={{{describe(self.config)}}})"
        )

    def list_parts(self) -> list[str]:
        """``"<partition>-<topic>"`` for every partition, waiting while the brokers are away."""
        refused: list[KafkaError] = []  # TLS or SASL failures: no retry fixes those

        def on_error(err: KafkaError) -> None:
            count_error("admin", err)
            if is_security_error(err):
                refused.append(err)

        admin_config: dict[str, Any] = {
            **self.config,
            "error_cb": on_error,
            "logger": librdkafka_logger(),
        }
        admin = AdminClient(admin_config)
        parts: list[str] = []
        for topic in self.topics:
            parts.extend(
                f"{idx}-{topic}" for idx in sorted(self._partitions_of(admin, topic, refused))
            )
        return parts

    def _partitions_of(
        self, admin: AdminClient, topic: str, refused: list[KafkaError]
    ) -> Iterable[int]:
        # Hand-written: librdkafka retries requests, but not "this topic is not in the metadata
        # yet" nor a metadata request that timed out while every broker is away.
        backoff = Backoff(cap=30.0, first=0.5)
        while True:
            try:
                # All topics, not just this one: asking for one may auto-create it, with the
                # broker's default partition count, when all it had was a typo.
                # A TLS or SASL refusal stops here, naming the setting: no retry fixes it.
                cluster = metadata_or_refusal(admin, refused, self.config, METADATA_TIMEOUT_S)
                meta: TopicMetadata | None = cluster.topics.get(topic)
            except KafkaException as exc:
                reason = exc.args[0].str()
            else:
                if meta is None and backoff.attempt < 2:  # not yet in every broker's view
                    reason = "not in the metadata yet"
                elif meta is None:
                    raise ConfigError(
                        f"Kafka topic {topic!r} does not exist. Create it (e.g. "
                        "confusion-produce --partitions N) or fix CONFUSION_KAFKA_TOPIC."
                    )
                elif meta.error is None and meta.partitions:
                    return meta.partitions.keys()
                elif meta.error is not None and not meta.error.retriable():
                    raise ConfigError(
                        f"Kafka topic {topic!r} cannot be read: "
                        f"{meta.error.str()}; check CONFUSION_KAFKA_TOPIC."
                    )
                else:
                    reason = meta.error.str() if meta.error is not None else "no partitions yet"
            pause = backoff.next_delay()
            log.warning(
                "waiting for metadata of topic %r (%s); retrying in %.1fs", topic, reason, pause
            )
            time.sleep(pause)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[RawBatch, int | None]:
        idx, topic = for_part.split("-", 1)
        if topic not in self.topics:
            raise ConfigError(
                f"the checkpoint holds topic {topic!r}, which is not in "
                "CONFUSION_KAFKA_TOPIC; use a new recovery directory"
            )
        config: dict[str, Any] = {
            "group.id": self.group or "BYTEWAX_IGNORED",  # never used to read offsets back
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            # Only used if a checkpointed offset has been deleted by retention: read what is
            # left rather than jump to the end.
            "auto.offset.reset": "earliest",
            "enable.partition.eof": str(self.stop_at_end).lower(),
            "statistics.interval.ms": 1000,
            **self.config,
        }
        starting = OFFSET_BEGINNING if self.start == "earliest" else OFFSET_END
        if resume_state is None:
            log.info(
                "partition %s/%s: no checkpoint, starting at the %s offset", topic, idx, self.start
            )
        else:
            log.info(
                "partition %s/%s: resuming at offset %s from the checkpoint",
                topic,
                idx,
                resume_state,
            )
        partition = _RawBatchPartition(
            step_id,
            config,
            topic,
            int(idx),
            starting,
            resume_state,
            self.batch_size,
            self.heartbeat,
            commit_to_group=self.group is not None,
        )
        return cast(StatefulSourcePartition[RawBatch, int | None], partition)


def kafka_source(settings: Settings, heartbeat: Heartbeat) -> KafkaBatchSource:
    """The source for ``CONFUSION_SOURCE=kafka``; reads the properties file, connects later."""
    config = client_config(settings.kafka_config_file, settings.kafka_bootstrap)
    source = KafkaBatchSource(
        settings.kafka_topics,
        config,
        start=settings.kafka_start,
        batch_size=settings.batch_size,
        stop_at_end=settings.kafka_stop_at_end,
        heartbeat=heartbeat,
        group=settings.kafka_group,
    )
    log.info(
        "reading %s (start=%s%s) with %s",
        ",".join(settings.kafka_topics),
        settings.kafka_start,
        ", stop at end" if settings.kafka_stop_at_end else "",
        describe(config),
    )
    return source
