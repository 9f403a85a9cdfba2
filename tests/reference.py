"""The test oracle: the contract's output documents recomputed from scratch.

Everything here is written from ``CONTRACT.md`` alone and shares no code with ``flows``: records
are validated by hand, each model's window is the plain list of its last N records, and every
metric comes from scikit-learn. It is deliberately slow and obvious. The flow tests, and the
Kafka/Elasticsearch integration tests, compare what the job wrote with `expected_run` through
`compare`.

Where the contract leaves a choice open, the oracle takes the one a user would expect and says so:

- a blank line (JSON whitespace only: space, tab, CR) is not a record: skipped, not
  dead-lettered; a line of \x0b or \x0c is a broken record;
- ``ts`` absent or ``null`` means "use the fallback" (message time or arrival time);
- an RFC 3339 ``ts`` keeps whole milliseconds (sub-millisecond digits are dropped) and must fall in
  the years 1..9999 once converted to UTC; ``T``/``Z`` may be lower case and the date and time may
  be separated by a space (RFC 3339 section 5.6);
- text must be valid Unicode: a string holding a lone surrogate (``"\\ud800"``) cannot be written
  back as UTF-8, so it refuses the record (id/label) or the entry (model name, labels);
- an ``id`` is a non-empty string or an integer; a record whose every model entry is refused is
  refused as a whole (one record-level dead letter, no entry-level ones);
- ``window.start``/``window.end`` are the times of the window's first and last record (read
  order), formatted ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

Time windows (README, "Time windows") follow the same plain style, record by record: the window
ends at the newest event time the model has read and holds the records with ``ts > newest -
duration``; a record already at or before that bound when it is read is never held (but counts in
``seq``); held records leave in read order, the oldest read first, once their time is at or before
the bound. ``window.first_id``/``start`` are the oldest held record's; ``last_id``/``end`` are the
last record read (held or not), and stand for the first too when nothing is held; ``full`` says
whether the newest time is at least one duration past the model's first record.
"""

from __future__ import annotations

import calendar
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from tests.score_reference import ensemble_scores, expected_scores

Doc = dict[str, Any]
DocKey = tuple[str, int]
Scope = Literal["record", "entry"]

TOLERANCE = 1e-9
DOCUMENT_KEYS = frozenset({"model", "window", "labels", "matrix", "metrics", "seq", "emitted_at"})
# scores: only for windows holding records with score maps; join: only with delayed labels
OPTIONAL_KEYS = frozenset({"scores", "join"})
JOIN_KEYS = frozenset({"seen", "joined", "expired", "waiting", "latency_ms"})
LATENCY_KEYS = frozenset({"count", "p50", "p95", "max"})
WINDOW_KEYS = frozenset({"kind", "size", "count", "full", "first_id", "last_id", "start", "end"})
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mcc", "kappa")
PER_CLASS_KEYS = ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "support")
TIME_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_RFC3339 = re.compile(  # ASCII: \d would also take other scripts' digits
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z",
    re.ASCII,
)
# Epoch milliseconds of 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
_MIN_MS = calendar.timegm((1, 1, 1, 0, 0, 0)) * 1000
_MAX_MS = calendar.timegm((9999, 12, 31, 23, 59, 59)) * 1000 + 999


class AnyTime:
    """Stands for a window time the oracle cannot know (a record without ``ts`` and no fallback).

    `compare` accepts any well-formed time in its place.
    """

    def __repr__(self) -> str:
        return "<any time>"


ANY_TIME = AnyTime()


class Refused(Exception):
    """Why the oracle refuses a record or an entry (the text is for humans, never compared)."""


# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line (``scope="record"``) or one model entry of a counted line that is refused."""

    index: int  # 0-based index of the line in the input
    raw: bytes
    scope: Scope
    model: str | None
    why: str


@dataclass(frozen=True, slots=True)
class ValidRecord:
    """A counted record: its identity, time (None = use the fallback) and one label per model."""

    index: int
    id: str | int
    ts: int | None
    label: str
    predictions: dict[str, str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # models with score maps


def _reject_constant(name: str) -> Any:
    raise Refused(f"{name} is not JSON")


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _text(value: str, what: str) -> str:
    if _has_lone_surrogate(value):
        raise Refused(f"{what} is not valid Unicode")
    return value


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused("not UTF-8") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, and the int-digits limit
        raise Refused(f"not JSON: {exc}") from exc


def _label(value: Any, what: str) -> str:
    if isinstance(value, bool):
        raise Refused(f"{what} is a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return _text(value, what)
    raise Refused(f"{what} must be a non-empty string or an integer")


def epoch_ms_of_rfc3339(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 date-time (sub-millisecond digits dropped)."""
    match = _RFC3339.match(text)
    if match is None:
        raise Refused(f"not RFC 3339: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, offset = match.group(7), match.group(8)
    millis = int((fraction[1:] + "000")[:3]) if fraction else 0
    if offset in ("Z", "z"):
        shift = timedelta(0)
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise Refused(f"bad offset in {text!r}")
        shift = sign * timedelta(hours=hours, minutes=minutes)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone(shift))
    except ValueError as exc:
        raise Refused(f"not a date-time: {text!r}") from exc
    utc_seconds = calendar.timegm(local.replace(tzinfo=None).timetuple()) - int(
        shift.total_seconds()
    )
    ms = utc_seconds * 1000 + millis
    if not _in_range(ms):
        raise Refused(f"{text!r} is outside the years 1..9999 in UTC")
    return ms


def _in_range(ms: int) -> bool:
    return _MIN_MS <= ms <= _MAX_MS


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise Refused("'ts' is a boolean")
    if isinstance(value, int):
        if not _in_range(value):
            raise Refused("'ts' is outside the years 1..9999")
        return value
    if isinstance(value, str):
        return epoch_ms_of_rfc3339(value)
    raise Refused("'ts' must be RFC 3339 or epoch milliseconds")


def arg_max(scores: Mapping[str, float]) -> str:
    """The highest-scoring label; a tie goes to the label that sorts first."""
    best = max(scores.values())
    return sorted(label for label, score in scores.items() if score == best)[0]


def _entry(model: str, value: Any) -> tuple[str, dict[str, float] | None]:
    """The predicted label of one model entry, and its score map if it has one."""
    if not model:
        raise Refused("empty model name")
    _text(model, "model name")
    if isinstance(value, dict):
        if not value:
            raise Refused("empty score map")
        scores: dict[str, float] = {}
        for label, score in value.items():
            if not label:
                raise Refused("empty label in score map")
            _text(label, "score label")
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise Refused(f"score of {label!r} is not a number")
            try:
                score = float(score)
            except OverflowError as exc:  # an integer beyond the float range
                raise Refused(f"score of {label!r} is not finite") from exc
            if not math.isfinite(score):
                raise Refused(f"score of {label!r} is not finite")
            scores[label] = score
        return arg_max(scores), scores
    return _label(value, "predicted label"), None


def ensemble_vote(
    weights: Mapping[str, float], votes: Sequence[tuple[str, str, Mapping[str, float] | None]]
) -> str | None:
    """Weighted arg-max over the members present: a bare label scores 1, others 0."""
    totals: dict[str, float] = {}
    voted = False
    for model, label, scores in votes:
        if model not in weights:
            continue
        voted = True
        for name, score in (scores or {label: 1.0}).items():
            totals[name] = totals.get(name, 0.0) + weights[model] * score
    if any(math.isnan(total) for total in totals.values()):
        raise Refused("weighted score sum is not a number")
    return arg_max(totals) if voted else None


def parse_line(
    index: int,
    raw: bytes,
    weights: Mapping[str, float] | None = None,
    ensemble_name: str = "ensemble",
) -> tuple[ValidRecord | None, list[Rejection]]:
    """Validate one non-blank line: the record (or None) and its rejections."""
    try:
        obj = _decode(raw)
        if not isinstance(obj, dict):
            raise Refused("not an object")
        if "id" not in obj:
            raise Refused("missing id")
        rid = obj["id"]
        if isinstance(rid, bool) or not (isinstance(rid, int) or (isinstance(rid, str) and rid)):
            raise Refused("bad id")
        if isinstance(rid, str):
            _text(rid, "id")
        if "label" not in obj:
            raise Refused("missing label")
        label = _label(obj["label"], "label")
        ts = _timestamp(obj.get("ts"))
        entries = obj.get("predictions")
        if not isinstance(entries, dict) or not entries:
            raise Refused("predictions missing, not an object or empty")
    except Refused as exc:
        return None, [Rejection(index, raw, "record", None, str(exc))]
    predictions: dict[str, str] = {}
    votes: list[tuple[str, str, dict[str, float] | None]] = []
    refused: list[Rejection] = []
    for model, value in entries.items():
        try:
            if weights and model == ensemble_name:
                raise Refused("model name reserved for the ensemble")
            pred, scores = _entry(model, value)
        except Refused as exc:
            refused.append(Rejection(index, raw, "entry", model, str(exc)))
            continue
        predictions[model] = pred
        votes.append((model, pred, scores))
    maps = {model: scores for model, _, scores in votes if scores is not None}
    if not predictions:
        return None, [Rejection(index, raw, "record", None, "no valid model entry")]
    if weights:
        try:
            combined = ensemble_vote(weights, votes)
        except Refused as exc:
            refused.append(Rejection(index, raw, "entry", ensemble_name, str(exc)))
            combined = None
        if combined is not None:
            predictions[ensemble_name] = combined
            ensemble_map = ensemble_scores(weights, votes)
            if ensemble_map is not None:
                maps[ensemble_name] = ensemble_map
    return ValidRecord(index, rid, ts, label, predictions, maps), refused


# ----------------------------------------------------------------------------- metrics


def _rate(denominator: int, value: float) -> float | None:
    return None if denominator == 0 else float(value)


PairCounts = tuple[tuple[tuple[str, str], int], ...]


@lru_cache(maxsize=8192)
def _window_metrics(pairs: PairCounts) -> Doc:
    """Metrics of the window holding each (truth, prediction) pair ``count`` times.

    The order of records in a window changes none of the metrics, so equal pair counts share
    one (slow) scikit-learn computation.
    """
    truth = [t for (t, _), count in pairs for _ in range(count)]
    pred = [p for (_, p), count in pairs for _ in range(count)]
    present = sorted(set(truth) | set(pred))
    n = len(truth)
    t_count, p_count = Counter(truth), Counter(pred)
    # scikit-learn gets order-preserving integer codes: the metrics are the same, and far cheaper
    # to validate than arrays of Python strings.
    code = {label: k for k, label in enumerate(present)}
    y_true = np.array([code[label] for label in truth], dtype=np.int64)
    y_pred = np.array([code[label] for label in pred], dtype=np.int64)
    classes = list(range(len(present)))
    with warnings.catch_warnings(), sklearn.config_context(skip_parameter_validation=True):
        warnings.simplefilter("ignore")
        cm = confusion_matrix(y_true, y_pred, labels=classes)
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=classes, zero_division=0
        )
    per_class: Doc = {}
    for k, label in enumerate(present):
        tp = int(cm[k, k])
        fn = int(cm[k, :].sum()) - tp
        fp = int(cm[:, k].sum()) - tp
        per_class[label] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": n - tp - fp - fn,
            "precision": _rate(tp + fp, precision[k]),
            "recall": _rate(tp + fn, recall[k]),
            "f1": _rate(2 * tp + fp + fn, f1[k]),
            "support": int(support[k]),
        }
    # Zero denominators decided from the counts, never from scikit-learn's 0.0/nan stand-ins.
    mcc_den = (n * n - sum(c * c for c in t_count.values())) * (
        n * n - sum(c * c for c in p_count.values())
    )
    kappa_den = n * n - sum(t_count[label] * p_count[label] for label in present)
    with warnings.catch_warnings(), sklearn.config_context(skip_parameter_validation=True):
        warnings.simplefilter("ignore")
        mcc = None if mcc_den == 0 else float(matthews_corrcoef(y_true, y_pred))
        kappa = None if kappa_den == 0 else float(cohen_kappa_score(y_true, y_pred, labels=classes))
        summary = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(
                f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
            ),
            "weighted_f1": float(
                f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)
            ),
            "mcc": mcc,
            "kappa": kappa,
        }
    return {**summary, "per_class": per_class}


@lru_cache(maxsize=8192)
def _exact_metrics(pairs: PairCounts) -> Doc:
    """The same metrics in exact integer arithmetic, from their textbook definitions.

    Far cheaper than eight scikit-learn calls per window; the oracle's own tests
    (``tests/unit/test_reference.py``) check it against scikit-learn.
    """
    support: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for (t, p), count in pairs:
        support[t] += count
        predicted[p] += count
        if t == p:
            hits[t] += count
    present = sorted(set(support) | set(predicted))
    n = sum(support.values())
    correct = sum(hits.values())
    per_class: Doc = {}
    f1_of: dict[str, Fraction] = {}
    for label in present:
        tp, row, column = hits[label], support[label], predicted[label]
        f1_of[label] = Fraction(2 * tp, row + column)
        per_class[label] = {
            "tp": tp,
            "fp": column - tp,
            "fn": row - tp,
            "tn": n - row - column + tp,
            "precision": float(Fraction(tp, column)) if column else None,
            "recall": float(Fraction(tp, row)) if row else None,
            "f1": float(f1_of[label]),
            "support": row,
        }
    recalls = [Fraction(hits[label], support[label]) for label in present if support[label]]
    agreement = sum(support[label] * predicted[label] for label in present)
    mcc_den = (n * n - sum(c * c for c in support.values())) * (
        n * n - sum(c * c for c in predicted.values())
    )
    return {
        "accuracy": float(Fraction(correct, n)),
        "balanced_accuracy": float(sum(recalls) / len(recalls)),
        "macro_f1": float(sum(f1_of.values()) / len(present)),
        "weighted_f1": float(sum(f1_of[label] * support[label] for label in present) / n),
        "mcc": (n * correct - agreement) / math.sqrt(mcc_den) if mcc_den else None,
        "kappa": (
            float(Fraction(n * correct - agreement, n * n - agreement))
            if n * n != agreement
            else None
        ),
        "per_class": per_class,
    }


MetricsEngine = Literal["sklearn", "exact"]


def exact_metrics(pair_counts: Mapping[tuple[str, str], int]) -> Doc:
    """Exact-arithmetic metrics of a window given as counts of (truth, prediction) pairs.

    For windows too large to list record by record (counts in the billions).
    """
    pairs = tuple(sorted((pair, count) for pair, count in pair_counts.items() if count))
    return _exact_metrics(pairs)


def window_metrics(
    truth: Sequence[str], pred: Sequence[str], engine: MetricsEngine = "sklearn"
) -> Doc:
    """The ``metrics`` object of a window holding these (truth, prediction) pairs.

    Args:
        truth: the true labels of the window's records.
        pred: their predicted labels.
        engine: ``sklearn`` (the oracle: every value from scikit-learn) or ``exact`` (integer
            arithmetic from the definitions; for tests that need thousands of windows).
    """
    if not truth:
        raise ValueError("an empty window has no document")
    pairs = tuple(sorted(Counter(zip(truth, pred, strict=True)).items()))
    metrics = (_window_metrics if engine == "sklearn" else _exact_metrics)(pairs)
    return {**metrics, "per_class": {k: dict(v) for k, v in metrics["per_class"].items()}}


def matrix_of(labels: Sequence[str], truth: Sequence[str], pred: Sequence[str]) -> list[list[int]]:
    """Counts by (truth, prediction) over ``labels`` in the given order, by plain counting."""
    pairs = Counter(zip(truth, pred, strict=True))
    return [[pairs[(t, p)] for p in labels] for t in labels]


def time_text(epoch_ms: int | None) -> str | AnyTime:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` of epoch milliseconds; `ANY_TIME` when unknown."""
    if epoch_ms is None:
        return ANY_TIME
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    return (
        f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d}T{stamp.hour:02d}:"
        f"{stamp.minute:02d}:{stamp.second:02d}.{stamp.microsecond // 1000:03d}Z"
    )


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class Counted:
    """One record as a model's window holds it."""

    id: str | int
    ts: int | None
    truth: str
    pred: str
    scores: dict[str, float] | None = None  # the model's score map, if it sent one


@dataclass(slots=True)
class _ModelHistory:
    records: list[Counted] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    emitted_seq: int = 0
    time_window: TimeWindowState | None = None


@dataclass(slots=True)
class ExpectedRun:
    """What the job must produce for one input: documents, dead letters and counts."""

    documents: dict[DocKey, Doc]
    rejections: list[Rejection]
    records: int
    lines: int


def expected_document(
    model: str,
    history: Sequence[Counted],
    labels: Iterable[str],
    window_size: int,
    engine: MetricsEngine = "sklearn",
    score_bins: int = 0,
) -> Doc:
    """The document of ``model``'s count window after ``history`` (every record it has
    counted, in order)."""
    window = history[-window_size:]
    return _document(
        model,
        "count",
        window_size,
        window,
        window[0],
        window[-1],
        len(window) == window_size,
        len(history),
        labels,
        engine,
        score_bins,
    )


def _document(
    model: str,
    kind: str,
    size: int,
    window: Sequence[Counted],
    first: Counted,
    last: Counted,
    full: bool,
    seq: int,
    labels: Iterable[str],
    engine: MetricsEngine,
    score_bins: int = 0,
) -> Doc:
    truth = [r.truth for r in window]
    pred = [r.pred for r in window]
    ordered = sorted(labels)
    doc: Doc = {
        "model": model,
        "window": {
            "kind": kind,
            "size": size,
            "count": len(window),
            "full": full,
            "first_id": first.id,
            "last_id": last.id,
            "start": time_text(first.ts),
            "end": time_text(last.ts),
        },
        "labels": ordered,
        "matrix": matrix_of(ordered, truth, pred),
        "metrics": window_metrics(truth, pred, engine),
        "seq": seq,
    }
    if score_bins:
        scores = expected_scores(
            [(r.truth, r.pred if r.scores is None else r.scores) for r in window], score_bins
        )
        if scores is not None:
            doc["scores"] = scores
    return doc


@dataclass(slots=True)
class TimeWindowState:
    """One model's time window, kept record by record as the README defines it."""

    duration_ms: int
    held: list[Counted] = field(default_factory=list)
    newest: int | None = None
    first_ts: int | None = None
    last: Counted | None = None

    def read(self, record: Counted) -> None:
        if record.ts is None:
            raise ValueError("a time window needs every record's time (give fallback_ts)")
        self.newest = record.ts if self.newest is None else max(self.newest, record.ts)
        if self.first_ts is None:
            self.first_ts = record.ts
        bound = self.newest - self.duration_ms
        if record.ts > bound:
            self.held.append(record)
        while self.held and self.held[0].ts is not None and self.held[0].ts <= bound:
            self.held.pop(0)
        self.last = record

    def document(
        self,
        model: str,
        seq: int,
        labels: Iterable[str],
        engine: MetricsEngine,
        score_bins: int = 0,
    ) -> Doc:
        assert self.last is not None and self.newest is not None and self.first_ts is not None
        first = self.held[0] if self.held else self.last
        return _document(
            model,
            "time",
            self.duration_ms,
            self.held,
            first,
            self.last,
            self.newest - self.first_ts >= self.duration_ms,
            seq,
            labels,
            engine,
            score_bins,
        )


def _as_bytes(line: bytes | str) -> bytes:
    return line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line)


def expected_run(
    lines: Sequence[bytes | str],
    *,
    window_size: int,
    emit_every: int,
    weights: Mapping[str, float] | None = None,
    ensemble_name: str = "ensemble",
    fallback_ts: Sequence[int | None] | None = None,
    bounded: bool = True,
    skip_blank: bool = True,
    engine: MetricsEngine = "sklearn",
    window_duration_ms: int | None = None,
    score_bins: int = 100,
) -> ExpectedRun:
    """Recompute every document, dead letter and count the job must produce for ``lines``.

    Args:
        lines: the input messages in read order (one JSON document each, no newline).
        window_size: ``CONFUSION_WINDOW_SIZE`` (count windows).
        emit_every: ``CONFUSION_EMIT_EVERY``.
        weights: ``CONFUSION_ENSEMBLE_WEIGHTS`` as a mapping (None or empty: no ensemble).
        ensemble_name: ``CONFUSION_ENSEMBLE_NAME``.
        fallback_ts: the time standing in for a missing ``ts``, per line; None when it is not
            known (e.g. arrival time), which makes such times `ANY_TIME`.
        bounded: whether the input ends (file, demo), which adds each model's final document.
        skip_blank: whether whitespace-only lines are skipped (as a JSON-lines file source
            does) rather than refused.
        engine: how metrics are computed, see `window_metrics`.
        window_duration_ms: ``CONFUSION_WINDOW_DURATION`` in milliseconds: time windows
            (``CONFUSION_WINDOW_KIND=time``) instead of count windows.
        score_bins: ``CONFUSION_SCORE_BINS`` (0: documents without ``scores``).
    """
    histories: dict[str, _ModelHistory] = {}

    def document(model: str, history: _ModelHistory) -> Doc:
        if history.time_window is not None:
            return history.time_window.document(
                model, len(history.records), history.labels, engine, score_bins
            )
        return expected_document(
            model, history.records, history.labels, window_size, engine, score_bins
        )

    documents: dict[DocKey, Doc] = {}
    rejections: list[Rejection] = []
    records = 0
    for index, line in enumerate(lines):
        raw = _as_bytes(line)
        if skip_blank and not raw.strip(b" \t\r\n"):  # JSON whitespace only
            continue
        record, refused = parse_line(index, raw, weights, ensemble_name)
        rejections.extend(refused)
        if record is None:
            continue
        records += 1
        ts = record.ts
        if ts is None and fallback_ts is not None:
            ts = fallback_ts[index]
        for model, pred in record.predictions.items():
            history = histories.get(model)
            if history is None:
                history = histories[model] = _ModelHistory(
                    time_window=None
                    if window_duration_ms is None
                    else TimeWindowState(window_duration_ms)
                )
            counted = Counted(record.id, ts, record.label, pred, record.scores.get(model))
            history.records.append(counted)
            history.labels.update((record.label, pred))
            if history.time_window is not None:
                history.time_window.read(counted)
            seq = len(history.records)
            if seq % emit_every == 0:
                documents[(model, seq)] = document(model, history)
                history.emitted_seq = seq
    if bounded:
        for model, history in histories.items():
            seq = len(history.records)
            if seq > history.emitted_seq:
                documents[(model, seq)] = document(model, history)
    return ExpectedRun(documents, rejections, records, len(lines))


def expected_documents(
    lines: Sequence[bytes | str],
    *,
    window_size: int,
    emit_every: int,
    weights: Mapping[str, float] | None = None,
    ensemble_name: str = "ensemble",
    fallback_ts: Sequence[int | None] | None = None,
) -> dict[DocKey, Doc]:
    """Only the documents of `expected_run`, keyed by ``(model, seq)``."""
    return expected_run(
        lines,
        window_size=window_size,
        emit_every=emit_every,
        weights=weights,
        ensemble_name=ensemble_name,
        fallback_ts=fallback_ts,
    ).documents


# ----------------------------------------------------------------------------- comparison


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def diff_values(path: str, actual: Any, expected: Any, out: list[str]) -> None:
    """Append to ``out`` a line per difference: floats to `TOLERANCE`, everything else exactly.

    None matches only None (a NaN never passes); `ANY_TIME` matches any well-formed time.
    """
    if isinstance(expected, AnyTime):
        if not (isinstance(actual, str) and TIME_FORMAT.match(actual)):
            out.append(f"{path}: {actual!r} is not a time like 2026-11-22T10:00:00.250Z")
        return
    if isinstance(expected, float):
        if not _is_number(actual):
            out.append(f"{path}: actual {actual!r}, expected {expected!r}")
        elif math.isnan(actual) or abs(actual - expected) > TOLERANCE:
            out.append(
                f"{path}: actual {actual!r}, expected {expected!r} "
                f"(off by {abs(actual - expected):.3g})"
            )
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            out.append(f"{path}: actual {actual!r} is not an object")
            return
        for key in sorted(set(actual) | set(expected), key=str):
            if key not in expected:
                out.append(f"{path}.{key}: unexpected key (value {actual[key]!r})")
            elif key not in actual:
                out.append(f"{path}.{key}: missing (expected {expected[key]!r})")
            else:
                diff_values(f"{path}.{key}", actual[key], expected[key], out)
        return
    if isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            diff_values(f"{path}[{i}]", a, e, out)
        return
    if type(actual) is not type(expected) or actual != expected:
        out.append(f"{path}: actual {actual!r}, expected {expected!r}")


def _key(doc: Mapping[str, Any]) -> DocKey:
    return (doc["model"], doc["seq"])


def document_diffs(
    actual: Mapping[str, Any], expected: Mapping[str, Any], ignore: Iterable[str] = ("emitted_at",)
) -> list[str]:
    """Differences between one actual and one expected document, one readable line each."""
    ignored = set(ignore)
    name = f"{actual.get('model')!r}#{actual.get('seq')}"
    out: list[str] = []
    missing = DOCUMENT_KEYS - ignored - set(actual)
    extra = set(actual) - DOCUMENT_KEYS - OPTIONAL_KEYS
    if missing or extra:
        out.append(f"{name}: keys missing {sorted(missing)}, unexpected {sorted(extra)}")
    if "emitted_at" in actual and not (
        isinstance(actual["emitted_at"], str) and TIME_FORMAT.match(actual["emitted_at"])
    ):
        out.append(f"{name}.emitted_at: {actual['emitted_at']!r} is not a time")
    wanted = {k: v for k, v in expected.items() if k not in ignored}
    got = {
        k: v for k, v in actual.items() if k not in ignored and k in DOCUMENT_KEYS | OPTIONAL_KEYS
    }
    diff_values(name, got, wanted, out)
    return out


def compare(
    actual_docs: Iterable[Mapping[str, Any]],
    expected_docs: Mapping[DocKey, Mapping[str, Any]] | Iterable[Mapping[str, Any]],
    *,
    subset: bool = False,
    ignore: Iterable[str] = ("emitted_at",),
    limit: int = 40,
) -> list[str]:
    """Readable differences between the documents a job wrote and the expected ones.

    Documents are matched by ``(model, seq)``. Labels, matrices, window fields and counts must be
    equal; metrics equal to `TOLERANCE`, and None only where None is expected (NaN never passes).

    Args:
        actual_docs: the documents as read back (JSON-lines file, Elasticsearch ``_source``).
        expected_docs: `expected_run(...).documents`, or an iterable of documents.
        subset: only check the expected keys (e.g. when the actual run emitted more often).
        ignore: top-level keys not compared (``emitted_at`` is wall-clock time).
        limit: at most this many lines are returned, plus a line saying how many were left out.

    Returns:
        An empty list when everything matches.
    """
    expected = (
        dict(expected_docs)
        if isinstance(expected_docs, Mapping)
        else {_key(doc): doc for doc in expected_docs}
    )
    out: list[str] = []
    seen: dict[DocKey, Mapping[str, Any]] = {}
    for doc in actual_docs:
        key = _key(doc)
        if key in seen:
            out.append(f"{key}: duplicate document")
            continue
        seen[key] = doc
    missing = sorted(set(expected) - set(seen), key=repr)
    unexpected = [] if subset else sorted(set(seen) - set(expected), key=repr)
    if missing:
        out.append(f"{len(missing)} expected documents missing, e.g. {missing[:8]}")
    if unexpected:
        out.append(f"{len(unexpected)} unexpected documents, e.g. {unexpected[:8]}")
    for key in sorted(set(seen) & set(expected), key=repr):
        out.extend(document_diffs(seen[key], expected[key], ignore))
    if len(out) > limit:
        out = [*out[:limit], f"... and {len(out) - limit} more differences"]
    return out


def assert_documents_match(
    actual_docs: Iterable[Mapping[str, Any]],
    expected_docs: Mapping[DocKey, Mapping[str, Any]],
    *,
    subset: bool = False,
) -> None:
    """`compare`, raising AssertionError with every difference on its own line."""
    diffs = compare(actual_docs, expected_docs, subset=subset)
    assert not diffs, "documents differ from the reference:\n  " + "\n  ".join(diffs)


def none_not_nan(value: Any, path: str = "") -> list[str]:
    """Paths of every NaN inside a document (the contract wants null instead)."""
    if isinstance(value, float) and math.isnan(value):
        return [path or "."]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in none_not_nan(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in none_not_nan(v, f"{path}[{i}]")]
    return []
