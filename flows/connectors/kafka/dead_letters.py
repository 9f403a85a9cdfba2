"""Dead letters back to Kafka: the original bytes as value, why and where from as headers.

Every worker has its own producer with delivery reports, flushed per batch, so none is lost
silently; see `DeadLetterTopicSink`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter

from flows.connectors.kafka.config import client_config, count_error, describe
from flows.connectors.outage import STALL_S, outage
from flows.connectors.retry import Backoff, Transient, retry_forever
from flows.errors import SinkError
from flows.logs import librdkafka_logger
from flows.parsing.batches import DeadLetter
from flows.settings import Settings
from flows.telemetry import job_logger

DEAD_LETTERS_WRITTEN = Counter(
    "confusion_dead_letters_written", "Dead letters delivered to the dead-letter topic"
)
DEAD_LETTERS_FAILED = Counter(
    "confusion_dead_letters_failed", "Dead letters Kafka refused for good (e.g. too large); logged"
)

# librdkafka retries what the broker reports as transient (leader moves, broker restarts, not
# enough replicas, timeouts) on its own, with its own backoff; with no message timeout it does so
# for as long as it takes, and `_DeadLetterPartition` waits (the dataflow's backpressure).
PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "message.timeout.ms": 0}

# Errors librdkafka gives up on that still go away by themselves (a topic being created, or a
# timeout the operator set with CONFUSION_KAFKA_OPT_MESSAGE_TIMEOUT_MS): sent again here.
_RETRY_CODES = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError._QUEUE_FULL,
}
# Errors that no retry fixes and that concern every message: stop and say so.
_FATAL_CODES = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
}


log = job_logger("kafka")

# A dead letter the topic refuses as too large is sent again cut to this many bytes, with
# headers ``truncated: true`` and ``original_size``, so the refusal leaves a trace.
TRUNCATED_BYTES = 16_384
ORIGINAL_SIZE = "original_size"


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    """Why and where from, as message headers; the value stays the original bytes."""
    source = dict(letter.headers)
    headers: list[tuple[str, str | bytes | None]] = [
        ("reason", letter.reason.encode()),
        ("scope", b"entry" if letter.model is not None else b"record"),
        ("source_topic", source.get("topic", letter.origin).encode()),
        ("source_partition", source.get("partition", "").encode()),
        ("source_offset", str(letter.position).encode()),
    ]
    if letter.model is not None:
        headers.append(("model", letter.model.encode()))
    if ORIGINAL_SIZE in source:
        headers += [("truncated", b"true"), (ORIGINAL_SIZE, source[ORIGINAL_SIZE].encode())]
    return headers


def truncated(letter: DeadLetter) -> DeadLetter:
    """A copy of ``letter`` holding only its first `TRUNCATED_BYTES` bytes and its size."""
    return replace(
        letter,
        raw=letter.raw[:TRUNCATED_BYTES],
        headers={**letter.headers, ORIGINAL_SIZE: str(len(letter.raw))},
    )


class _Outcome:
    """What became of the letters of one send: delivered, to retry, too large, or refused."""

    def __init__(self) -> None:
        self.retry: list[DeadLetter] = []
        self.too_large: list[DeadLetter] = []


class _Undelivered(Transient):
    def __init__(self, letters: list[DeadLetter]) -> None:
        super().__init__(f"{len(letters)} dead letters not yet delivered")
        self.letters = letters


class _DeadLetterPartition(StatelessSinkPartition[tuple[str, DeadLetter]]):
    def __init__(self, producer: Producer, topic: str, max_backoff: float) -> None:
        self._producer = producer
        self._topic = topic
        self._max_backoff = max_backoff
        self._reporter = f"dead letters {id(self)}"
        self._waiting = 0
        self._outage = outage(f"Kafka (dead-letter topic {topic})", self._behind)

    def _behind(self) -> str:
        return f"{self._waiting:,} dead letters waiting (the dataflow is paused until delivered)"

    def write_batch(self, items: list[tuple[str, DeadLetter]]) -> None:
        """Deliver every letter or log why not; what librdkafka gave up on is sent again."""
        pending = [letter for _key, letter in items]
        self._waiting = len(pending)

        def attempt() -> None:
            nonlocal pending
            outcome = self._send(pending)
            # Hand-written, librdkafka cannot do it: the broker refuses a whole record batch when
            # one message is too large, so the innocent batch-mates are sent again one by one;
            # only the guilty one stays refused.
            for letter in outcome.too_large:
                alone = self._send([letter])
                outcome.retry += alone.retry
                for refused in alone.too_large:
                    # Still a trace: the head of the bytes, with the original size and offset.
                    copy = truncated(refused)
                    log.warning(
                        "dead letter from %s@%d (%d bytes) is too large for %s; "
                        "sending its first %d bytes with header original_size",
                        refused.origin,
                        refused.position,
                        len(refused.raw),
                        self._topic,
                        len(copy.raw),
                    )
                    shortened = self._send([copy])
                    outcome.retry += shortened.retry
                    for lost in shortened.too_large:
                        self._give_up(lost, "too large for the dead-letter topic, even truncated")
            pending = outcome.retry
            if pending:
                raise _Undelivered(pending)

        def on_retry(exc: Exception, _reason: str, _attempt: int, pause: float) -> None:
            self._waiting = len(pending)
            self._outage.down(self._reporter, f"{len(pending)} dead letters not delivered")
            log.warning(
                "%d dead letters not yet delivered to %s; retrying in %.1fs",
                len(pending),
                self._topic,
                pause,
            )

        retry_forever(
            attempt,
            lambda exc: "undelivered" if isinstance(exc, _Undelivered) else None,
            on_retry,
            Backoff(self._max_backoff, first=0.2),
        )
        self._waiting = 0
        self._outage.up(self._reporter)

    def _send(self, letters: list[DeadLetter]) -> _Outcome:
        outcome = _Outcome()

        def report(letter: DeadLetter) -> Any:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                if err is None:
                    DEAD_LETTERS_WRITTEN.inc()
                else:
                    self._failed(letter, err, outcome)

            return on_delivery

        for letter in letters:
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        value=letter.raw,
                        key=letter.origin.encode(),
                        headers=dead_letter_headers(letter),
                        on_delivery=report(letter),
                    )
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    self._producer.poll(0.1)
                except KafkaException as exc:
                    self._failed(letter, exc.args[0], outcome)
                    break
            self._producer.poll(0)
        waited = 0.0
        while self._producer.flush(1.0) > 0:
            waited += 1.0
            if waited >= STALL_S:  # the outage tracker logs it once, then every REPORT_EVERY_S
                self._outage.down(self._reporter, f"no delivery report for {waited:.0f}s")
        return outcome

    def _failed(self, letter: DeadLetter, err: KafkaError, outcome: _Outcome) -> None:
        count_error("producer", err)
        code = err.code()
        if code in _FATAL_CODES or err.fatal():
            raise SinkError(f"cannot write dead letters to {self._topic}: {err.str()}")
        if code == KafkaError.MSG_SIZE_TOO_LARGE:
            outcome.too_large.append(letter)
        elif code in _RETRY_CODES or err.retriable():
            outcome.retry.append(letter)
        else:
            self._give_up(letter, err.str())

    @staticmethod
    def _give_up(letter: DeadLetter, why: str) -> None:
        DEAD_LETTERS_FAILED.inc()
        log.error(
            "dead letter from %s@%d (%s) refused by Kafka, not retried: %s",
            letter.origin,
            letter.position,
            letter.reason,
            why,
        )

    def close(self) -> None:
        self._producer.flush()


class DeadLetterTopicSink(DynamicSink[tuple[str, DeadLetter]]):
    """Rejected records to a Kafka topic: original bytes as value, reason and origin as headers.

    Every worker has its own producer; each batch is flushed before the next one is taken, so a
    crash loses nothing that was not also replayed from the checkpoint. Delivery is therefore
    at-least-once: a replay after a crash may write a dead letter twice (dedupe on
    ``source_topic``/``source_partition``/``source_offset``/``model``).
    """

    def __init__(self, topic: str, config: Mapping[str, str], max_backoff: float = 30.0) -> None:
        self.topic = topic
        self.config = dict(config)
        self.max_backoff = max_backoff

    def __repr__(self) -> str:
        return f"DeadLetterTopicSink(topic={self.topic!r}, config={{{describe(self.config)}}})"

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetterTopicSink:
        return cls(
            settings.dead_letter_topic,
            client_config(settings.kafka_config_file, settings.kafka_bootstrap),
        )

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterPartition:
        producer = Producer(
            {
                **PRODUCER_DEFAULTS,
                **self.config,
                "error_cb": lambda e: count_error("producer", e),
                "logger": librdkafka_logger(),
            }
        )
        return _DeadLetterPartition(producer, self.topic, self.max_backoff)
