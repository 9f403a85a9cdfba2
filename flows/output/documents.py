"""Output documents: one per model per emission, exactly the contract's shape.

`Document` writes that shape down once; sinks, the summary table and tests take it from here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from flows.output import metrics, score_metrics
from flows.output.metrics import Metrics
from flows.windows.base import WindowView


class WindowInfo(TypedDict):
    """Which records the matrix counts: ``kind`` is ``count`` or ``time``; ``size`` is records
    or milliseconds; ids and times of the oldest and newest record in the window."""

    kind: str
    size: int
    count: int
    full: bool
    first_id: str | int
    last_id: str | int
    start: str
    end: str


class Document(TypedDict):
    """One model's window at one emission; ``_id`` in Elasticsearch is `document_id`."""

    model: str
    window: WindowInfo
    labels: list[str]
    matrix: list[list[int]]
    metrics: Metrics
    seq: int
    emitted_at: str
    scores: NotRequired[dict[str, Any]]  # only for windows holding records with score maps
    join: NotRequired[dict[str, Any]]  # with delayed labels: join counts and label latency


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _iso_seconds(epoch_s: int) -> str:
    t = _EPOCH + timedelta(seconds=epoch_s)  # fromtimestamp() refuses years before 1970 on some
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"  # platforms; %Y is not zero-padded
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}."
    )


def iso_ms(epoch_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, the format of every time in a document."""
    seconds, millis = divmod(int(epoch_ms), 1000)
    return f"{_iso_seconds(seconds)}{millis:03d}Z"


def now_ms() -> int:
    """Wall-clock epoch milliseconds (one per document: no datetime object)."""
    return time.time_ns() // 1_000_000


def document(model: str, view: WindowView, emitted_at_ms: int) -> Document:
    """Build the document of ``model``'s window; ``labels`` sorted, matrix permuted to match."""
    order = sorted(range(len(view.labels)), key=view.labels.__getitem__)
    labels = [view.labels[i] for i in order]
    matrix = view.matrix
    if order != list(range(len(order))):
        matrix = matrix[order][:, order]
    rows = matrix.tolist()
    doc: Document = {
        "model": model,
        "window": window_info(view),
        "labels": labels,
        "matrix": rows,
        "metrics": metrics.of_rows(labels, rows),
        "seq": view.seq,
        "emitted_at": iso_ms(emitted_at_ms),
    }
    if view.scores is not None:
        scores = score_metrics.compute(view.scores)
        if scores is not None:
            doc["scores"] = scores
    return doc


def window_info(view: WindowView) -> WindowInfo:
    """The ``window`` object of a document (and of an alert raised at that record)."""
    (first_id, start), (last_id, end) = view.first, view.last
    return {
        "kind": view.kind.value,
        "size": view.size,
        "count": view.count,
        "full": view.full,
        "first_id": first_id,
        "last_id": last_id,
        "start": iso_ms(start),
        "end": iso_ms(end),
    }


def document_id(doc: Document) -> str:
    """The stable identity ``model/kind/seq``: a replayed emission gets the same id."""
    return f"{doc['model']}/{doc['window']['kind']}/{doc['seq']}"
