"""Alert documents to a Kafka topic: key = the alert's ``id``, value = the JSON document.

Each batch is flushed before the next, so nothing a checkpoint covers is lost; a replay may send
an alert again (at least once: consumers dedupe on ``id``). librdkafka retries transient
failures itself; with no message timeout, until they pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from flows.connectors.kafka.config import client_config, count_error
from flows.errors import SinkError
from flows.logs import librdkafka_logger
from flows.settings import Settings
from flows.telemetry import job_logger

Doc = dict[str, Any]
ALERT_PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "message.timeout.ms": 0,
    "enable.idempotence": True,
}

log = job_logger("kafka")


class _AlertTopicPartition(StatelessSinkPartition[tuple[str, Doc]]):
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def write_batch(self, items: list[tuple[str, Doc]]) -> None:
        failures: list[str] = []

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                count_error("producer", err)
                failures.append(err.str())

        for _model, doc in items:
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        key=doc["id"].encode(),
                        value=orjson.dumps(doc),
                        on_delivery=report,
                    )
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    self._producer.poll(0.1)
        while self._producer.flush(5.0) > 0:
            log.warning("waiting for alert deliveries to %s", self._topic)
        if failures:
            raise SinkError(f"Kafka refused alerts for topic {self._topic}: {failures[0]}")

    def close(self) -> None:
        self._producer.flush()


class AlertTopicSink(DynamicSink[tuple[str, Doc]]):
    """``(model, alert)`` items to a Kafka topic; every worker has its own producer."""

    def __init__(self, topic: str, config: Mapping[str, str]) -> None:
        self.topic = topic
        self.config = dict(config)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertTopicSink:
        assert settings.alerts_topic is not None
        return cls(
            settings.alerts_topic,
            client_config(settings.kafka_config_file, settings.kafka_bootstrap),
        )

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertTopicPartition:
        producer = Producer(
            {
                **ALERT_PRODUCER_DEFAULTS,
                **self.config,
                "error_cb": lambda e: count_error("producer", e),
                "logger": librdkafka_logger(),
            }
        )
        return _AlertTopicPartition(producer, self.topic)
