"""Alert documents to Elasticsearch (``<index>-alerts``) and to a Kafka topic.

Alerts are few (a handful per model per day), so both sinks send each batch at once instead of
buffering: an alert is worth its own request. Elasticsearch documents have ``_id`` = the alert's
``id``, so a replay after recovery overwrites them; the sink waits for Elasticsearch at every
snapshot, so a committed checkpoint implies written alerts. Kafka messages are keyed by ``id``
and delivered at least once (a replay may send one again; consumers dedupe on ``id``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import orjson
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from confluent_kafka import KafkaError, Message, Producer

from flows.connectors.elasticsearch import (
    TEMPLATE_PRIORITY,
    BulkSender,
    BulkWriter,
    EsClientOptions,
    _action,
    call_with_retry,
)
from flows.errors import SinkError
from flows.settings import Settings
from flows.telemetry import job_logger

Doc = dict[str, Any]
ALERTS_TEMPLATE_VERSION = 1
_KEYWORD = {"type": "keyword"}
_DATE = {"type": "date"}
_DOUBLE = {"type": "double"}
_LONG = {"type": "long"}

log = job_logger("alerts")


def alerts_index(index: str) -> str:
    return f"{index}-alerts"


def alert_mappings() -> dict[str, Any]:
    """Every field of an alert document typed; ``detector`` is one flattened field."""
    return {
        "dynamic": False,
        "properties": {
            **{name: _KEYWORD for name in ("id", "alert_id", "status", "model", "source",
                                           "name", "metric", "baseline_source", "reason")},
            **{name: _DOUBLE for name in ("value", "threshold", "limit", "baseline")},
            **{name: _LONG for name in ("seq", "fired_seq", "baseline_seq")},
            **{name: _DATE for name in ("fired_at", "at", "emitted_at")},
            "detector": {"type": "flattened"},
            "window": {"properties": {
                "kind": _KEYWORD, "size": _LONG, "count": _LONG, "full": {"type": "boolean"},
                "first_id": _KEYWORD, "last_id": _KEYWORD, "start": _DATE, "end": _DATE}},
        },
    }


def install_alerts_index(writer: BulkWriter, name: str) -> None:
    """Put the alerts index template (idempotent), then create the index if missing."""
    indices = writer.client.indices

    def put_template() -> object:
        return indices.put_index_template(
            name=f"{name}-template", index_patterns=[name], priority=TEMPLATE_PRIORITY,
            version=ALERTS_TEMPLATE_VERSION,
            template={"mappings": alert_mappings(),
                      "settings": {"index": {"refresh_interval": "1s"}}},
            meta={"managed_by": "confusion-stream"})

    def exists() -> bool:
        return bool(indices.exists(index=name))

    call_with_retry(f"installing index template {name}-template", put_template,
                    writer.max_backoff)
    if call_with_retry(f"checking index {name}", exists, writer.max_backoff):
        return
    try:
        call_with_retry(f"creating index {name}", lambda: indices.create(index=name),
                        writer.max_backoff)
    except SinkError:
        if not exists():  # not the race with another worker creating it first
            raise


class _AlertsPartition(StatefulSinkPartition[Doc, None]):
    def __init__(self, sender: BulkSender, index: str) -> None:
        self._sender = sender
        self._index = index
        self._ticket = 0

    def write_batch(self, values: list[Doc]) -> None:
        actions = [_action(self._index, doc["id"], orjson.dumps(doc), None) for doc in values]
        if actions:
            self._ticket = self._sender.submit(actions)

    def snapshot(self) -> None:
        self._sender.wait(self._ticket)

    def close(self) -> None:
        self.snapshot()


class ElasticsearchAlertsSink(FixedPartitionedSink[Doc, None]):
    """``(model, alert)`` items to ``<index>-alerts``; one partition (alerts are rare)."""

    def __init__(self, options: EsClientOptions, index: str, max_backoff: float = 30.0) -> None:
        self.options = options
        self.index = alerts_index(index)
        self.max_backoff = max_backoff
        self._sender: BulkSender | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ElasticsearchAlertsSink({self.options!r}, index={self.index!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticsearchAlertsSink:
        assert settings.es_url is not None
        options = EsClientOptions(settings.es_url, settings.es_api_key, settings.es_username,
                                  settings.es_password, settings.es_ca_certs,
                                  settings.es_verify_certs, settings.es_request_timeout)
        return cls(options, settings.es_index, settings.es_max_backoff)

    def list_parts(self) -> list[str]:
        return ["alerts"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _AlertsPartition:
        with self._lock:
            if self._sender is None:
                writer = BulkWriter(self.options.client(), 500, 5_000_000, self.max_backoff)
                install_alerts_index(writer, self.index)
                self._sender = BulkSender(writer)
        return _AlertsPartition(self._sender, self.index)


# librdkafka retries transient failures itself; with no message timeout, until they pass.
ALERT_PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "message.timeout.ms": 0,
                                           "enable.idempotence": True}


class _AlertTopicPartition(StatelessSinkPartition[tuple[str, Doc]]):
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def write_batch(self, items: list[tuple[str, Doc]]) -> None:
        failures: list[str] = []

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err.str())

        for _model, doc in items:
            while True:
                try:
                    self._producer.produce(self._topic, key=doc["id"].encode(),
                                           value=orjson.dumps(doc), on_delivery=report)
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
    """``(model, alert)`` items to a Kafka topic, key = alert ``id``, value = the JSON document.

    Each batch is flushed before the next, so nothing a checkpoint covers is lost; a replay may
    send an alert again (at least once).
    """

    def __init__(self, topic: str, config: Mapping[str, str]) -> None:
        self.topic = topic
        self.config = dict(config)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertTopicSink:
        from flows.connectors.kafka import client_config

        assert settings.alerts_topic is not None
        return cls(settings.alerts_topic, client_config(settings))

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> _AlertTopicPartition:
        return _AlertTopicPartition(Producer({**ALERT_PRODUCER_DEFAULTS, **self.config}),
                                    self.topic)
