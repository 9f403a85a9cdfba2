"""Batches: what sources hand over, what parsing hands on, and `parse_batch` between them.

Everything here is pure: bytes in, columns and rejections out. Sources hand over a `RawBatch` (the
raw message bytes, a fallback timestamp per message, where each came from); `parse_batch` turns it
into one `ModelColumns` per model plus a `DeadLetter` for each record or model entry it refuses.
Well-formed records take the columnar fast path (`fast_path`), the rest are judged one by one
(`checks`). The batch shape is what keeps per-record overhead low: the dataflow moves one item
per batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.limits import Limits
from flows.parsing.accel import decode as accel_decode
from flows.parsing.checks import (
    ID_MAX,
    ID_MIN,
    MAX_MS,
    MIN_MS,
    PENDING,
    RFC3339_LINES,
    LabelRecord,
    Record,
    RecordError,
    decode,
    parse_label_record,
    parse_record,
    timestamp_ms,
)
from flows.parsing.ensemble import Ensemble
from flows.parsing.ensemble_columns import ensemble_columns
from flows.parsing.fast_path import (
    FastColumns,
    JoinWire,
    PredictedCodes,
    Wire,
    decode_batch,
    predicted_codes,
)
from flows.parsing.halves import (
    Halves,
    LabelHalves,
    ModelPredictions,
    PredictionHalves,
    no_predictions,
)
from flows.parsing.labels import LabelTable
from flows.parsing.times import batch_ms


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Messages as a source read them, in read order.

    Attributes:
        values: the raw bytes of each message (one JSON document each).
        fallback_ts: epoch ms standing in for a missing ``ts`` (Kafka message time or arrival).
        origin: where the batch came from, e.g. a file path or ``topic/partition``.
        positions: each message's position there (line number or offset), for dead letters.
        headers: source details copied into dead letters (e.g. Kafka topic and partition).
    """

    values: Sequence[bytes]
    fallback_ts: Sequence[int]
    origin: str
    positions: Sequence[int]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ModelColumns:
    """One model's counted records from one batch, column by column, in read order.

    ``truth`` and ``pred`` are codes into ``labels``, a table the batch's models share; a window
    maps them to its own codes once per batch instead of once per record.
    """

    model: str
    labels: list[str]
    truth: NDArray[np.int32]
    pred: NDArray[np.int32]
    ids: list[str | int]
    ts: NDArray[np.int64]
    # Where each record came from, for dead letters written after parsing (the class limit).
    origin: str = ""
    positions: NDArray[np.int64] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Score maps, when the model sent any in this batch: their labels, and (records, labels)
    # scores with NaN where a record's map lacks the label (a row of NaN: a bare label).
    score_keys: list[str] = field(default_factory=list)
    scores: NDArray[np.float64] | None = None
    # Label time minus prediction time, for records joined from two halves (delayed labels).
    latency: NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.truth)

    def take(self, rows: NDArray[np.int64]) -> ModelColumns:
        """The records at ``rows`` (read order kept)."""
        return ModelColumns(
            self.model,
            self.labels,
            self.truth[rows],
            self.pred[rows],
            [self.ids[i] for i in rows.tolist()],
            self.ts[rows],
            self.origin,
            None if self.positions is None else self.positions[rows],
            self.headers,
            self.score_keys,
            None if self.scores is None else self.scores[rows],
            None if self.latency is None else self.latency[rows],
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused record (``model`` is None) or a refused model entry of an otherwise good record.

    The raw bytes are kept untouched so nothing is lost: a fixed record can be replayed as is.
    """

    raw: bytes
    reason: str
    origin: str
    position: int
    model: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The dead-letter document of file-based destinations."""
        doc: dict[str, Any] = {
            "reason": self.reason,
            "scope": "record" if self.model is None else "entry",
            "source": {"origin": self.origin, "position": self.position, **self.headers},
        }
        if self.model is not None:
            doc["model"] = self.model
        try:
            doc["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            doc["raw_hex"] = self.raw.hex()
        return doc


@dataclass(slots=True)
class ParsedBatch:
    """The result of parsing one `RawBatch`."""

    by_model: dict[str, ModelColumns]
    dead: list[DeadLetter]
    records: int = 0
    rejected_records: int = 0
    rejected_entries: int = 0
    halves: Halves | None = None  # with the join on: prediction and label halves


def _timestamps(
    raw: list[str | int | None], fallback: Sequence[int]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Epoch ms per row, and which rows have a ``ts`` that `timestamp_ms` refuses."""
    bad = np.zeros(len(raw), dtype=bool)
    if set(map(type, raw)) == {int}:
        try:
            ts = np.asarray(raw, dtype=np.int64)
        except OverflowError:
            pass
        else:
            return ts, (ts < MIN_MS) | (ts > MAX_MS)
    strings = bool(raw) and set(map(type, raw)) == {str}
    if strings:  # the common batch: one layout, converted column by column
        ms = batch_ms(raw, MIN_MS, MAX_MS)  # type: ignore[arg-type]
        if ms is not None:
            return ms, bad
    # One regex call checks the RFC 3339 form of a batch of strings (no string of that form
    # holds a newline, so the join cannot make a bad one pass).
    checked = strings and RFC3339_LINES.fullmatch("\n".join(raw)) is not None  # type: ignore[arg-type]
    out = []
    for i, value in enumerate(raw):
        if value is None:
            out.append(fallback[i])
            continue
        try:
            out.append(timestamp_ms(value, checked))
        except RecordError:
            bad[i] = True
            out.append(0)
    return np.asarray(out, dtype=np.int64), bad


@dataclass(slots=True)
class _Judged:
    """Rows judged one by one, per model, in row order."""

    rows: list[int] = field(default_factory=list)
    truth: list[str] = field(default_factory=list)
    pred: list[str] = field(default_factory=list)
    ids: list[str | int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    scores: list[dict[str, float] | None] = field(default_factory=list)


def _merge_scores(
    fast: ModelColumns | None, judged: _Judged, order: NDArray[np.int64] | None
) -> tuple[list[str], NDArray[np.float64] | None]:
    """Score columns of fast-path and one-by-one rows together (``order``: read order)."""
    fast_keys = [] if fast is None or fast.scores is None else fast.score_keys
    names = sorted(set(fast_keys).union(*(m for m in judged.scores if m is not None)))
    if not names:
        return [], None
    column = {name: j for j, name in enumerate(names)}
    n_fast = 0 if fast is None else len(fast)
    scores = np.full((n_fast + len(judged.scores), len(names)), np.nan)
    if fast is not None and fast.scores is not None:
        scores[:n_fast, [column[k] for k in fast_keys]] = fast.scores
    for i, entry in enumerate(judged.scores, n_fast):
        if entry is not None:
            for name, score in entry.items():
                scores[i, column[name]] = score
    return names, scores if order is None else scores[order]


def _merge(
    model: str,
    table: LabelTable,
    fast: ModelColumns | None,
    fast_rows: NDArray[Any],
    judged: _Judged,
) -> ModelColumns:
    """Interleave fast-path and one-by-one rows of a model back into read order."""
    truth = table.encode(judged.truth)
    pred = table.encode(judged.pred)
    ts = np.asarray(judged.ts, dtype=np.int64)
    if fast is None:
        keys, scores = _merge_scores(None, judged, None)
        return ModelColumns(
            model, table.labels, truth, pred, judged.ids, ts, score_keys=keys, scores=scores
        )
    rows = np.concatenate([fast_rows, np.asarray(judged.rows, dtype=fast_rows.dtype)])
    order = np.argsort(rows, kind="stable")
    ids = fast.ids + judged.ids
    keys, scores = _merge_scores(fast, judged, order)
    return ModelColumns(
        model,
        table.labels,
        np.concatenate([fast.truth, truth])[order],
        np.concatenate([fast.pred, pred])[order],
        [ids[i] for i in order],
        np.concatenate([fast.ts, ts])[order],
        score_keys=keys,
        scores=scores,
    )


def _ids_out_of_range(ids: list[str | int]) -> NDArray[np.bool_] | bool:
    """Rows whose integer id does not fit in 64 bits (the slow path says why); both the record
    and the label-half fast paths ask this."""
    if int not in set(map(type, ids)):
        return False
    return np.asarray([type(i) is int and not ID_MIN <= i <= ID_MAX for i in ids], dtype=bool)


def _ensemble_columns(
    ensemble: Ensemble, table: LabelTable, shape: tuple[str, ...] | None, cols: PredictedCodes
) -> NDArray[np.bool_] | bool:
    """Add the ensemble to ``cols`` as one more model; the rows to judge one by one instead.

    ``shape``: the models every record names, in one order (None when records differ). When the
    batch is not regular enough for the column ensemble, every row goes one by one.
    """
    if shape is None:
        return True
    maps = {model: (order, *cols.scores[model]) for model, order in cols.key_order.items()}
    bare = {model: cols.pred[model] for model in cols.bare}
    voted = ensemble_columns(ensemble.weights, len(cols.bad), table, shape, bare, maps)
    if voted is None:
        return True
    cols.pred[ensemble.name] = voted.pred
    if voted.scores is not None:
        cols.scores[ensemble.name] = (voted.score_keys, voted.scores)
    return voted.refer


def _judge(
    raw: bytes, ensemble: Ensemble | None, limits: Limits, join: bool = False
) -> Record | LabelRecord:
    obj, check_text = decode(raw, limits.record_bytes)
    if join and type(obj) is dict and "predictions" not in obj and "label" in obj:
        return parse_label_record(obj, check_text)
    return parse_record(obj, ensemble, check_text, limits.models, join)


DEFAULT_LIMITS = Limits()


def _python_columns(
    batch: RawBatch, ensemble: Ensemble | None, limits: Limits, join: bool, reserved: str | None
) -> FastColumns:
    """The columnar path in Python: msgspec's batch decode, then column by column."""
    values = batch.values
    wires = decode_batch(values, limits.record_bytes, join)
    table = LabelTable()
    fast: list[int] = []
    ws: list[Wire | JoinWire] = []
    label_rows: list[int] = []
    if not join and None not in wires:  # the common batch: every record decoded
        ids: list[str | int] = [w.id for w in wires]
        preds: list[dict[str, Any]] = [w.predictions for w in wires]
        labels: list[Any] = [w.label for w in wires]
        if "" not in ids and "" not in labels and all(preds):
            fast, ws = list(range(len(wires))), wires
    if not fast and (ensemble is None or not join):
        for i, w in enumerate(wires):
            if w is not None and w.predictions and w.id != "" and w.label != "":
                fast.append(i)
                ws.append(w)
            elif join and w is not None and w.predictions is None and w.label not in (None, ""):
                label_rows.append(i)
    if ws is not wires:
        ids, preds, labels = (
            [w.id for w in ws],
            [w.predictions or {} for w in ws],
            [w.label for w in ws],
        )
    fallback = (
        batch.fallback_ts if len(fast) == len(values) else [batch.fallback_ts[i] for i in fast]
    )
    ts, bad = _timestamps([w.ts for w in ws], fallback)
    if join and None in labels:
        labels = [PENDING if label is None else label for label in labels]
    if int in set(map(type, labels)):
        labels = [label if type(label) is str else str(label) for label in labels]
    truth = table.encode(labels)
    cols = predicted_codes(table, preds, reserved)
    bad |= cols.bad
    if len(cols.pred) > limits.models:  # some record may have too many entries
        bad |= np.asarray([len(p) > limits.models for p in preds], dtype=bool)
    bad |= _ids_out_of_range(ids)
    shapes = set(map(tuple, preds)) if ensemble is not None else set()
    shape = next(iter(shapes)) if len(shapes) == 1 else None
    return FastColumns(wires, label_rows, fast, table, ids, truth, ts, bad, cols, shape)


def parse_batch(
    batch: RawBatch,
    ensemble: Ensemble | None = None,
    limits: Limits = DEFAULT_LIMITS,
    join: bool = False,
    accel: bool = False,
) -> ParsedBatch:
    """Parse a batch into per-model columns, keeping read order within each model.

    Well-formed records take the columnar fast path (`flows.parsing.fast_path`, with the
    ensemble as a weighted sum of score matrices, `flows.parsing.ensemble_columns`); the rest are
    judged by `parse_record`, which gives the reason for each refusal. Both paths reach the same
    verdict on every record. With ``join`` (delayed labels), prediction and label halves come
    out apart, in ``halves``; an ensemble then judges every record one by one. With ``accel``
    the compiled decoder (`flows.parsing.accel`) reads a plain batch's columns in one call; a
    batch it does not take whole is parsed here as without it.
    """
    values = batch.values
    reserved = None if ensemble is None else ensemble.name
    got = None if join or not accel else accel_decode(values, batch.fallback_ts, limits, reserved)
    c = got if got is not None else _python_columns(batch, ensemble, limits, join, reserved)
    wires, label_rows, fast, bad, shape = c.wires, c.label_rows, c.fast, c.bad, c.shape
    table, ids, truth, ts, cols = c.table, c.ids, c.truth, c.ts, c.cols
    if ensemble is not None and fast:
        bad |= _ensemble_columns(ensemble, table, shape, cols)
    rows = np.asarray(fast, dtype=np.int64)
    keep = ~bad

    by_fast: dict[str, tuple[ModelColumns, NDArray[Any]]] = {}
    for model, pred in cols.pred.items():
        take = keep & (pred >= 0)
        keys, scores = cols.scores.get(model, ([], None))
        whole = ModelColumns(
            model, table.labels, truth, pred, ids, ts, score_keys=keys, scores=scores
        )
        if take.all():
            by_fast[model] = (whole, rows)
        elif take.any():
            sel = np.flatnonzero(take)
            by_fast[model] = (whole.take(sel), rows[sel])

    label_fast = _fast_labels(batch, wires, label_rows) if label_rows else None
    slow: list[int] = []
    if label_fast is not None or len(rows) < len(values) or not keep.all():
        taken = set(rows[keep].tolist())
        if label_fast is not None:
            taken.update(label_fast[0])
        slow = sorted(set(range(len(values))) - taken)
    judged: dict[str, _Judged] = {}
    dead: list[DeadLetter] = []
    slow_labels: list[tuple[int, LabelRecord]] = []
    rejected_records = rejected_entries = 0
    for i in slow:
        try:
            rec = _judge(values[i], ensemble, limits, join)
            if isinstance(rec, LabelRecord):
                slow_labels.append((i, rec))
                continue
        except RecordError as exc:
            rejected_records += 1
            dead.append(
                DeadLetter(
                    bytes(values[i]),
                    str(exc),
                    batch.origin,
                    batch.positions[i],
                    None,
                    batch.headers,
                )
            )
            continue
        when = batch.fallback_ts[i] if rec.ts is None else rec.ts
        for model, pred_label in rec.predictions.items():
            j = judged.get(model)
            if j is None:
                j = judged[model] = _Judged()
            j.rows.append(i)
            j.truth.append(rec.label)
            j.pred.append(pred_label)
            j.ids.append(rec.id)
            j.ts.append(when)
            j.scores.append(rec.scores.get(model))
        for model, reason in rec.entry_errors.items():
            rejected_entries += 1
            dead.append(
                DeadLetter(
                    bytes(values[i]), reason, batch.origin, batch.positions[i], model, batch.headers
                )
            )

    by_model = {model: cols_ for model, (cols_, _) in by_fast.items()}
    model_rows = {model: rows_ for model, (_, rows_) in by_fast.items()}
    for model, j in judged.items():
        fast_cols, fast_rows = by_fast.get(model, (None, rows[:0]))
        by_model[model] = _merge(model, table, fast_cols, fast_rows, j)
        model_rows[model] = np.sort(np.concatenate([fast_rows, np.asarray(j.rows, np.int64)]))
    if by_model:
        where = np.asarray(batch.positions, dtype=np.int64)
        for model, cols_ in by_model.items():
            cols_.origin, cols_.headers = batch.origin, batch.headers
            cols_.positions = where[model_rows[model]]
    halves = None
    if join:
        predictions = _prediction_halves(table, by_model, model_rows)
        labels_ = _label_halves(batch, label_fast, slow_labels)
        halves = Halves(batch.origin, batch.headers, predictions, labels_).clocked()
    return ParsedBatch(
        by_model,
        dead,
        len(values) - rejected_records,
        rejected_records,
        rejected_entries,
        halves,
    )


_FastLabels = tuple[list[int], list[str | int], list[str], NDArray[np.int64]]


def _fast_labels(batch: RawBatch, wires: list[Any], rows: list[int]) -> _FastLabels | None:
    """Label halves the fast path accepts: rows, ids, labels and times (the rest go slow)."""
    ws = [wires[i] for i in rows]
    ts, bad = _timestamps([w.ts for w in ws], [batch.fallback_ts[i] for i in rows])
    ids = [w.id for w in ws]
    bad |= _ids_out_of_range(ids)
    keep = np.flatnonzero(~bad).tolist()
    if not keep:
        return None
    return (
        [rows[k] for k in keep],
        [ids[k] for k in keep],
        [str(ws[k].label) for k in keep],
        ts[keep],
    )


def _label_halves(
    batch: RawBatch, fast: _FastLabels | None, slow: list[tuple[int, LabelRecord]]
) -> LabelHalves:
    rows, ids, labels, ts = ([], [], [], np.zeros(0, np.int64)) if fast is None else fast
    when = [batch.fallback_ts[i] if rec.ts is None else rec.ts for i, rec in slow]
    all_rows = np.asarray(rows + [i for i, _ in slow], dtype=np.int64)
    order = np.argsort(all_rows, kind="stable")
    all_ids = ids + [rec.id for _, rec in slow]
    all_labels = labels + [rec.label for _, rec in slow]
    pick = order.tolist()
    where = np.asarray(batch.positions, dtype=np.int64)
    return LabelHalves(
        all_rows[order],
        [all_ids[i] for i in pick],
        [all_labels[i] for i in pick],
        np.concatenate([ts, np.asarray(when, dtype=np.int64)])[order],
        where[all_rows[order]] if len(all_rows) else all_rows,
        np.zeros(len(all_rows), dtype=np.int64),
    )


def _prediction_halves(
    table: LabelTable, by_model: dict[str, ModelColumns], model_rows: dict[str, NDArray[np.int64]]
) -> PredictionHalves:
    """Take the prediction halves (truth `PENDING`) out of ``by_model``, one row per record."""
    pending = table.index.get(PENDING)
    if pending is None:
        return no_predictions()
    parts: dict[str, tuple[ModelColumns, NDArray[np.int64]]] = {}
    for model in list(by_model):
        cols = by_model[model]
        mask = cols.truth == pending
        if not mask.any():
            continue
        parts[model] = (cols.take(np.flatnonzero(mask)), model_rows[model][mask])
        if mask.all():
            del by_model[model]
        else:
            by_model[model] = cols.take(np.flatnonzero(~mask))
    if not parts:
        return no_predictions()
    rows = np.unique(np.concatenate([r for _, r in parts.values()]))
    n = len(rows)
    ids: list[Any] = [None] * n
    ts = np.zeros(n, dtype=np.int64)
    positions = np.zeros(n, dtype=np.int64)
    models: dict[str, ModelPredictions] = {}
    for model, (cols, at) in parts.items():
        idx = np.searchsorted(rows, at)
        for j, rid in zip(idx.tolist(), cols.ids, strict=True):
            ids[j] = rid
        ts[idx] = cols.ts
        if cols.positions is not None:
            positions[idx] = cols.positions
        pred = np.full(n, -1, dtype=np.int32)
        pred[idx] = cols.pred
        scores = None
        if cols.scores is not None:
            scores = np.full((n, len(cols.score_keys)), np.nan)
            scores[idx] = cols.scores
        models[model] = ModelPredictions(pred, cols.score_keys, scores)
    return PredictionHalves(
        rows, ids, ts, positions, table.labels, models, np.zeros(n, dtype=np.int64)
    )
