"""Alert documents to ``<index>-alerts``: one typed index, ``_id`` = the alert's ``id``.

Alerts are few (a handful per model per day), so each batch is sent at once instead of buffered;
a replay after recovery overwrites by id, and every snapshot waits until Elasticsearch has the
alerts, so a committed checkpoint implies written alerts.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.connectors.elasticsearch.bulk import (
    BulkSender,
    BulkWriter,
    EsClientOptions,
    Retrier,
    index_action,
)
from flows.connectors.elasticsearch.mapping import TEMPLATE_PRIORITY
from flows.errors import SinkError
from flows.settings import Settings

Doc = dict[str, Any]
ALERTS_TEMPLATE_VERSION = 1
_KEYWORD = {"type": "keyword"}
_DATE = {"type": "date"}
_DOUBLE = {"type": "double"}
_LONG = {"type": "long"}


def alerts_index(index: str) -> str:
    return f"{index}-alerts"


def alert_mappings() -> dict[str, Any]:
    """Every field of an alert document typed; ``detector`` is one flattened field."""
    return {
        "dynamic": False,
        "properties": {
            **{
                name: _KEYWORD
                for name in (
                    "id",
                    "alert_id",
                    "status",
                    "model",
                    "source",
                    "name",
                    "metric",
                    "baseline_source",
                    "reason",
                )
            },
            **{name: _DOUBLE for name in ("value", "threshold", "limit", "baseline")},
            **{name: _LONG for name in ("seq", "fired_seq", "baseline_seq")},
            **{name: _DATE for name in ("fired_at", "at", "emitted_at")},
            "detector": {"type": "flattened"},
            "window": {
                "properties": {
                    "kind": _KEYWORD,
                    "size": _LONG,
                    "count": _LONG,
                    "full": {"type": "boolean"},
                    "first_id": _KEYWORD,
                    "last_id": _KEYWORD,
                    "start": _DATE,
                    "end": _DATE,
                }
            },
        },
    }


def install_alerts_index(retrier: Retrier, name: str) -> None:
    """Put the alerts index template (idempotent), then create the index if missing."""
    indices = retrier.client.indices

    def put_template() -> object:
        return indices.put_index_template(
            name=f"{name}-template",
            index_patterns=[name],
            priority=TEMPLATE_PRIORITY,
            version=ALERTS_TEMPLATE_VERSION,
            template={
                "mappings": alert_mappings(),
                "settings": {"index": {"refresh_interval": "1s"}},
            },
            meta={"managed_by": "confusion-stream"},
        )

    def exists() -> bool:
        return bool(indices.exists(index=name))

    retrier.call(f"installing index template {name}-template", put_template)
    if retrier.call(f"checking index {name}", exists):
        return
    try:
        retrier.call(f"creating index {name}", lambda: indices.create(index=name))
    except SinkError:
        if not exists():  # not the race with another worker creating it first
            raise


class _AlertsPartition(StatefulSinkPartition[Doc, None]):
    def __init__(self, sender: BulkSender, index: str) -> None:
        self._sender = sender
        self._index = index
        self._ticket = 0

    def write_batch(self, values: list[Doc]) -> None:
        actions = [index_action(self._index, doc["id"], orjson.dumps(doc), None) for doc in values]
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
        options = EsClientOptions(
            settings.es_url,
            settings.es_api_key,
            settings.es_username,
            settings.es_password,
            settings.es_ca_certs,
            settings.es_verify_certs,
            settings.es_request_timeout,
        )
        return cls(options, settings.es_index, settings.es_max_backoff)

    def list_parts(self) -> list[str]:
        return ["alerts"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _AlertsPartition:
        with self._lock:
            if self._sender is None:
                retrier = Retrier(self.options.client(), self.max_backoff, self.options.ca_certs)
                install_alerts_index(retrier, self.index)
                self._sender = BulkSender(BulkWriter(retrier, 500, 5_000_000))
        return _AlertsPartition(self._sender, self.index)
