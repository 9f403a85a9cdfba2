"""The indices: explicit mappings, the index templates that carry them, and their names.

History (``CONFUSION_ES_INDEX``) keeps every emission; latest (``<index>-latest``) one document
per model. Both get the same template, installed (idempotently) at every start.
"""

from __future__ import annotations

from typing import Any

from flows.connectors.elasticsearch.bulk import Retrier
from flows.errors import SinkError
from flows.output.metrics import METRIC_NAMES
from flows.output.score_metrics import SCORE_METRIC_NAMES
from flows.windows.latency import JOIN_COUNTS, LATENCY_KEYS

TEMPLATE_PRIORITY = 200
TEMPLATE_VERSION = 3  # 2: the scores object; 3: the join object
# Searchable within a fraction of a second: documents are few (one per model per emission), so a
# short refresh costs little.
REFRESH_INTERVAL = "100ms"
_DATE = {"type": "date"}
_METRIC = {"type": "double"}
_KEYWORD = {"type": "keyword"}


def mappings() -> dict[str, Any]:
    """Explicit mappings: what is queried is typed, what is bulky is stored but not indexed.

    ``dynamic: false`` keeps extra fields in ``_source`` without growing the mapping; the matrix
    is kept for display only and ``per_class`` is one ``flattened`` field however many labels.
    """
    return {
        "dynamic": False,
        "properties": {
            "model": _KEYWORD,
            "seq": {"type": "long"},
            "emitted_at": _DATE,
            "labels": _KEYWORD,
            "window": {
                "properties": {
                    "kind": _KEYWORD,
                    "size": {"type": "long"},
                    "count": {"type": "long"},
                    "full": {"type": "boolean"},
                    "first_id": _KEYWORD,
                    "last_id": _KEYWORD,
                    "start": _DATE,
                    "end": _DATE,
                }
            },
            "matrix": {"type": "object", "enabled": False},
            "metrics": {
                "properties": {
                    **{name: _METRIC for name in METRIC_NAMES},
                    "per_class": {"type": "flattened"},
                }
            },
            # Ranking and calibration of models that send score maps: the summary values are
            # typed, the per-class values one flattened field, the tables kept for display.
            "scores": {
                "properties": {
                    "count": {"type": "long"},
                    "bins": {"type": "integer"},
                    "out_of_range": {"type": "long"},
                    "per_class": {"type": "flattened"},
                    **{name: _METRIC for name in SCORE_METRIC_NAMES},
                    "reliability": {"type": "object", "enabled": False},
                    "thresholds": {"type": "object", "enabled": False},
                }
            },
            # Delayed labels: the model's join counts and the window's label latency.
            "join": {
                "properties": {
                    **{name: {"type": "long"} for name in JOIN_COUNTS},
                    "latency_ms": {"properties": {name: {"type": "long"} for name in LATENCY_KEYS}},
                }
            },
        },
    }


def latest_index(index: str) -> str:
    return f"{index}-latest"


def install(retrier: Retrier, index: str) -> None:
    """Put the index templates of history and latest, then create missing indices."""
    for name in (index, latest_index(index)):
        _install_one(retrier, name)


def _install_one(retrier: Retrier, name: str) -> None:
    indices = retrier.client.indices

    def put_template() -> object:
        return indices.put_index_template(
            name=f"{name}-template",
            index_patterns=[name],
            priority=TEMPLATE_PRIORITY,
            version=TEMPLATE_VERSION,
            template={
                "mappings": mappings(),
                "settings": {"index": {"refresh_interval": REFRESH_INTERVAL}},
            },
            meta={"managed_by": "confusion-stream"},
        )

    def exists() -> bool:
        return bool(indices.exists(index=name))

    def add_fields() -> object:  # an index made by an older template gains the new fields
        return indices.put_mapping(index=name, properties=mappings()["properties"])

    retrier.call(f"installing index template {name}-template", put_template)
    if retrier.call(f"checking index {name}", exists):
        retrier.call(f"adding new fields to the mapping of {name}", add_fields)
        return
    try:
        retrier.call(f"creating index {name}", lambda: indices.create(index=name))
    except SinkError:
        if not exists():  # not the race with another worker creating it first
            raise
