"""What the report keeps of the job's documents: compact per-model series, never all documents.

A report over 100,000 documents must not hold 100,000 parsed dicts (a 20-class document is
several kilobytes), so each document is folded into typed arrays as it is read and only each
model's newest document is kept whole, for its matrix. Optional parts of a document (``scores``
from score maps, the delayed-label counts, alert documents) are read when present and simply
leave their series empty when absent, so the page can omit their charts.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

Doc = dict[str, Any]
FloatArray = NDArray[np.float64]

HEADLINE = ("accuracy", "macro_f1", "mcc", "balanced_accuracy")
HEADLINE_TITLES = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "mcc": "MCC",
    "balanced_accuracy": "balanced accuracy",
    "fill": "window fill",
}
# The score summary of issue 13's ``scores`` object and the label join counts of issue 12.
SCORE_SERIES = ("macro_roc_auc", "macro_average_precision", "brier", "ece")
SCORE_TITLES = {
    "macro_roc_auc": "macro ROC-AUC",
    "macro_average_precision": "macro AP",
    "brier": "Brier score",
    "ece": "ECE",
}
COVERAGE_SERIES = ("seen", "joined", "expired", "waiting")
LATENCY_SERIES = ("p50", "p95", "max")


class DocumentError(ValueError):
    """A document is not one this report reads; the message says what is wrong with it."""


def parse_time_ms(text: Any) -> int:
    """RFC 3339 (``Z`` or an offset) or epoch milliseconds, as epoch milliseconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a time: {text!r}")
    if isinstance(text, int | float):
        return int(text)
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"time without a UTC offset: {text!r}")
    return int(stamp.timestamp() * 1000)


def _number(value: Any) -> float:
    """A document number as float; null (undefined metric) becomes NaN, a gap in the line."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _require(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise DocumentError(f"{where}: missing {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DocumentError(f"{where}: {key!r} is {type(value).__name__}, not the expected type")
    return value


SUPPORTED_VERSION = 1


def check_window_doc(doc: Mapping[str, Any], where: str, *, need_matrix: bool = True) -> None:
    """Raise `DocumentError` unless ``doc`` is a window document of the shape this report reads."""
    version = doc.get("v", doc.get("version", SUPPORTED_VERSION))
    if version != SUPPORTED_VERSION:
        raise DocumentError(
            f"{where}: document version {version!r} is not supported "
            f"(this report reads version {SUPPORTED_VERSION})"
        )
    _require(doc, "model", str, where)
    _require(doc, "seq", int, where)
    window = _require(doc, "window", dict, where)
    for key in ("kind", "end"):
        if key not in window:
            raise DocumentError(f"{where}: window has no {key!r}")
    labels = _require(doc, "labels", list, where)
    metrics = _require(doc, "metrics", dict, where)
    if "accuracy" not in metrics:
        raise DocumentError(f"{where}: metrics has no 'accuracy'")
    if need_matrix:
        matrix = _require(doc, "matrix", list, where)
        if len(matrix) != len(labels) or any(
            not isinstance(row, list) or len(row) != len(labels) for row in matrix
        ):
            raise DocumentError(
                f"{where}: 'matrix' is not {len(labels)}x{len(labels)} like 'labels'"
            )
    try:
        parse_time_ms(window["end"])
    except ValueError as exc:
        raise DocumentError(f"{where}: window end: {exc}") from None


def window_fill(window: Mapping[str, Any]) -> float:
    """Share of the window that holds records: count/size, or covered span/duration for time."""
    size = window.get("size")
    if not isinstance(size, int | float) or not size:
        return math.nan
    if window.get("kind") == "time":
        try:
            span = parse_time_ms(window["end"]) - parse_time_ms(window["start"])
        except (KeyError, ValueError):
            return math.nan
        return 1.0 if window.get("full") else min(1.0, span / size)
    count = window.get("count")
    return min(1.0, count / size) if isinstance(count, int | float) else math.nan


def label_join(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The delayed-label ``join`` block of a document (seen, joined, expired, waiting)."""
    for key in ("join", "label_join"):
        value = doc.get(key)
        if isinstance(value, dict):
            return value
    return None


def label_latency(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """Label latency (label time minus prediction time) percentiles, in milliseconds: the join
    block's ``latency_ms`` (p50, p95, max of the labels joined since the previous document)."""
    join = label_join(doc)
    for holder in (doc, join or {}):
        value = holder.get("latency_ms") or holder.get("label_latency")
        if isinstance(value, dict):
            return value
    return None


def scores_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    value = doc.get("scores")
    return value if isinstance(value, dict) else None


def _score_value(scores: Mapping[str, Any], name: str) -> float:
    aliases = {
        "macro_roc_auc": ("macro_roc_auc", "roc_auc_macro", "roc_auc"),
        "macro_average_precision": (
            "macro_average_precision",
            "average_precision_macro",
            "macro_ap",
            "average_precision",
        ),
        "brier": ("brier", "brier_score"),
        "ece": ("ece",),
    }[name]
    for key in aliases:
        value = scores.get(key)
        if isinstance(value, dict):  # {"ece": {"value": .., "bins": [..]}}
            value = value.get("value")
        if value is not None:
            return _number(value)
    return math.nan


@dataclass(slots=True)
class _Columns:
    """Append-only float columns of equal length; a key that appears late is NaN-padded."""

    length: int = 0
    columns: dict[str, array[float]] = field(default_factory=dict)

    def append(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            column = self.columns.get(key)
            if column is None:
                column = self.columns[key] = array("d", [math.nan]) * self.length
            column.append(value)
        self.length += 1
        for column in self.columns.values():
            if len(column) < self.length:
                column.append(math.nan)

    def arrays(self, order: NDArray[np.intp]) -> dict[str, FloatArray]:
        return {
            key: np.frombuffer(column, dtype=np.float64)[order]
            for key, column in self.columns.items()
        }


@dataclass(slots=True)
class ModelSeries:
    """One model's documents, folded: x values, metric columns and the newest document."""

    model: str
    seq: array[int] = field(default_factory=lambda: array("q"))
    time_ms: array[int] = field(default_factory=lambda: array("q"))
    headline: _Columns = field(default_factory=_Columns)
    recall: _Columns = field(default_factory=_Columns)
    precision: _Columns = field(default_factory=_Columns)
    scores: _Columns = field(default_factory=_Columns)
    coverage: _Columns = field(default_factory=_Columns)
    latency: _Columns = field(default_factory=_Columns)
    latest: Doc | None = None
    has_scores: bool = False
    has_labels: bool = False

    def add(self, doc: Doc) -> None:
        """Fold in one checked window document (any order; duplicates of a seq are allowed)."""
        seq = int(doc["seq"])
        self.seq.append(seq)
        self.time_ms.append(parse_time_ms(doc["window"]["end"]))
        metrics = doc["metrics"]
        values = {name: _number(metrics.get(name)) for name in HEADLINE}
        values["fill"] = window_fill(doc["window"])
        self.headline.append(values)
        per_class = metrics.get("per_class") or {}
        self.recall.append(
            {str(k): _number(v.get("recall")) for k, v in per_class.items() if isinstance(v, dict)}
        )
        self.precision.append(
            {
                str(k): _number(v.get("precision"))
                for k, v in per_class.items()
                if isinstance(v, dict)
            }
        )
        scores = scores_of(doc)
        self.has_scores |= scores is not None
        self.scores.append(
            {name: _score_value(scores, name) for name in SCORE_SERIES} if scores else {}
        )
        join, latency = label_join(doc), label_latency(doc)
        self.has_labels |= join is not None or latency is not None
        self.coverage.append({k: _number(join.get(k)) for k in COVERAGE_SERIES} if join else {})
        self.latency.append({k: _number(latency.get(k)) for k in LATENCY_SERIES} if latency else {})
        if "matrix" in doc and (self.latest is None or seq >= int(self.latest["seq"])):
            self.latest = doc

    def __len__(self) -> int:
        return len(self.seq)

    def frame(self) -> SeriesFrame:
        """The columns sorted by seq, one row per seq (the last document read of a seq wins)."""
        seq = np.frombuffer(self.seq, dtype=np.int64)
        # A stable sort keeps read order within a seq; keep the last row of each run.
        order = np.argsort(seq, kind="stable")
        sorted_seq = seq[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = sorted_seq[1:] != sorted_seq[:-1]
        order = order[last]
        return SeriesFrame(
            model=self.model,
            seq=seq[order],
            time_ms=np.frombuffer(self.time_ms, dtype=np.int64)[order],
            headline=self.headline.arrays(order),
            recall=self.recall.arrays(order),
            precision=self.precision.arrays(order),
            scores=self.scores.arrays(order),
            coverage=self.coverage.arrays(order),
            latency=self.latency.arrays(order),
            latest=self.latest,
        )


@dataclass(frozen=True, slots=True)
class SeriesFrame:
    """A model's series, sorted by seq, as numpy arrays (NaN where a value is undefined)."""

    model: str
    seq: NDArray[np.int64]
    time_ms: NDArray[np.int64]
    headline: dict[str, FloatArray]
    recall: dict[str, FloatArray]
    precision: dict[str, FloatArray]
    scores: dict[str, FloatArray]
    coverage: dict[str, FloatArray]
    latency: dict[str, FloatArray]
    latest: Doc | None

    def x(self, axis: str) -> NDArray[np.int64]:
        return self.time_ms if axis == "time" else self.seq

    def any_values(self, columns: Mapping[str, FloatArray]) -> bool:
        return any(bool(np.isfinite(v).any()) for v in columns.values())


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert or resolution document (issue 14), reduced to what the page marks and lists."""

    model: str
    state: str  # "fired" or "resolved"
    source: str  # "rule" or "detector"
    name: str  # the rule or detector that fired
    metric: str | None
    value: float | None
    baseline: float | None
    seq: int | None
    time_ms: int | None
    window_end_ms: int | None

    def x(self, axis: str) -> int | None:
        if axis == "time":
            return self.window_end_ms if self.window_end_ms is not None else self.time_ms
        return self.seq


ALERT_MARKERS = ("alert", "rule", "detector", "fired_at", "resolved_at")


def is_alert_doc(doc: Mapping[str, Any]) -> bool:
    """An alert document has a model, no matrix, and says what fired."""
    return "model" in doc and "matrix" not in doc and any(k in doc for k in ALERT_MARKERS)


def _optional_number(value: Any) -> float | None:
    number = _number(value)
    return None if math.isnan(number) else number


def _optional_time(value: Any) -> int | None:
    try:
        return parse_time_ms(value) if value is not None else None
    except ValueError:
        return None


def parse_alert(doc: Mapping[str, Any], where: str) -> Alert:
    """Read an alert document tolerantly: what fired may be ``rule``/``detector``/``alert``."""
    model = doc.get("model")
    if not isinstance(model, str):
        raise DocumentError(f"{where}: alert without a 'model'")
    state_raw = str(doc.get("state") or doc.get("status") or doc.get("event") or "fired").lower()
    state = "resolved" if state_raw.startswith("resol") or doc.get("resolved") is True else "fired"
    what = doc.get("alert")
    source = str(
        doc.get("source") or doc.get("kind") or ("detector" if "detector" in doc else "rule")
    )
    if isinstance(what, dict):
        name = str(what.get("name") or what.get("rule") or what.get("detector") or source)
    else:
        name = str(doc.get("name") or doc.get("rule") or doc.get("detector") or what or source)
    window = doc.get("window") if isinstance(doc.get("window"), dict) else {}
    seq = doc.get("seq", window.get("seq") if window else None)
    # ``at``: when this transition happened (issue 14); older shapes say fired_at/resolved_at.
    fired = (
        doc.get("at")
        or (doc.get("resolved_at") if state == "resolved" else None)
        or doc.get("fired_at")
        or doc.get("emitted_at")
    )
    return Alert(
        model=model,
        state=state,
        source=source,
        name=name,
        metric=str(doc["metric"]) if doc.get("metric") is not None else None,
        value=_optional_number(doc.get("value")),
        baseline=_optional_number(doc.get("baseline")),
        seq=int(seq) if isinstance(seq, int) and not isinstance(seq, bool) else None,
        time_ms=_optional_time(fired),
        window_end_ms=_optional_time(window.get("end") if window else None),
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which documents the report covers: a set of models and a window-end time range."""

    models: frozenset[str] | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def wants_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def wants_time(self, time_ms: int | None) -> bool:
        if time_ms is None:
            return self.since_ms is None and self.until_ms is None
        return (self.since_ms is None or time_ms >= self.since_ms) and (
            self.until_ms is None or time_ms <= self.until_ms
        )


@dataclass(slots=True)
class Collection:
    """Everything read: per-model series plus alerts, filtered by a `Selection`."""

    selection: Selection = field(default_factory=Selection)
    models: dict[str, ModelSeries] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    documents: int = 0
    skipped: int = 0

    def add_window(self, doc: Doc) -> None:
        model = doc["model"]
        if not self.selection.wants_model(model) or not self.selection.wants_time(
            parse_time_ms(doc["window"]["end"])
        ):
            self.skipped += 1
            return
        series = self.models.get(model)
        if series is None:
            series = self.models[model] = ModelSeries(model)
        series.add(doc)
        self.documents += 1

    def add_alert(self, alert: Alert) -> None:
        if self.selection.wants_model(alert.model) and self.selection.wants_time(alert.x("time")):
            self.alerts.append(alert)

    def frames(self) -> list[SeriesFrame]:
        return [self.models[name].frame() for name in sorted(self.models)]


# ------------------------------------------------------------------ downsampling


def minmax_indices(y: FloatArray, buckets: int) -> NDArray[np.intp]:
    """Indices of the finite points to draw: each bucket's minimum and maximum, in order.

    Splitting the series into ``buckets`` runs of equal length and keeping the lowest and the
    highest point of each keeps every dip and spike a reader must see (a drift that lasts one
    document still shows), at most ``2 * buckets + 2`` points whatever the length, the first
    and the last included. Points inside a
    run of equal values (a window fill of 1.0 for hours) are left out too: the line is the same.
    """
    finite = np.flatnonzero(np.isfinite(y))
    if len(finite) <= 2 * buckets:
        return _drop_flat(finite, y)
    values = y[finite]
    size = math.ceil(len(finite) / buckets)
    pad = size * buckets - len(finite)
    low = np.concatenate([values, np.full(pad, np.inf)]).reshape(buckets, size)
    high = np.concatenate([values, np.full(pad, -np.inf)]).reshape(buckets, size)
    base = np.arange(buckets) * size
    picks = np.concatenate(
        [[0, len(finite) - 1], base + low.argmin(axis=1), base + high.argmax(axis=1)]
    )  # both ends: the line spans the range
    picks = np.unique(picks[picks < len(finite)])
    return _drop_flat(finite[picks], y)


def _drop_flat(indices: NDArray[np.intp], y: FloatArray) -> NDArray[np.intp]:
    """Leave out points inside a run of equal values: the line through them is the same."""
    if len(indices) < 3:
        return indices
    v = y[indices]
    keep = np.ones(len(indices), dtype=bool)
    keep[1:-1] = (v[1:-1] != v[:-2]) | (v[1:-1] != v[2:])
    kept: NDArray[np.intp] = indices[keep]
    return kept


def long_rows(
    x: NDArray[np.int64],
    columns: Mapping[str, FloatArray],
    buckets: int,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{x, series, y}`` of every column, each downsampled on its own."""
    rows: list[dict[str, Any]] = []
    for key, y in columns.items():
        label = names.get(key, key) if names else key
        for i in minmax_indices(y, buckets).tolist():
            rows.append({"x": int(x[i]), "series": label, "y": round(float(y[i]), 4)})
    return rows


def nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def iter_finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]
