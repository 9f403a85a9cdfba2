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
from flows.parsing.checks import (
    ID_MAX,
    ID_MIN,
    MAX_MS,
    MIN_MS,
    RFC3339_LINES,
    Record,
    RecordError,
    decode,
    parse_record,
    timestamp_ms,
)
from flows.parsing.ensemble import Ensemble
from flows.parsing.fast_path import Wire, decode_batch, predicted_codes
from flows.parsing.labels import LabelTable


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

    def __len__(self) -> int:
        return len(self.truth)


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


def _timestamps(
    raw: list[str | int | None], fallback: list[int]
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
    # One regex call checks the RFC 3339 form of a batch of strings (no string of that form
    # holds a newline, so the join cannot make a bad one pass).
    checked = (
        bool(raw)
        and set(map(type, raw)) == {str}
        and RFC3339_LINES.fullmatch("\n".join(raw)) is not None  # type: ignore[arg-type]
    )
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
        return ModelColumns(model, table.labels, truth, pred, judged.ids, ts)
    rows = np.concatenate([fast_rows, np.asarray(judged.rows, dtype=fast_rows.dtype)])
    order = np.argsort(rows, kind="stable")
    ids = fast.ids + judged.ids
    return ModelColumns(
        model,
        table.labels,
        np.concatenate([fast.truth, truth])[order],
        np.concatenate([fast.pred, pred])[order],
        [ids[i] for i in order],
        np.concatenate([fast.ts, ts])[order],
    )


def _judge(raw: bytes, ensemble: Ensemble | None, limits: Limits) -> Record:
    obj, check_text = decode(raw, limits.record_bytes)
    return parse_record(obj, ensemble, check_text, limits.models)


DEFAULT_LIMITS = Limits()


def parse_batch(
    batch: RawBatch, ensemble: Ensemble | None = None, limits: Limits = DEFAULT_LIMITS
) -> ParsedBatch:
    """Parse a batch into per-model columns, keeping read order within each model.

    Well-formed records take the columnar fast path (`flows.parsing.fast_path`); the rest, and every
    record when an ensemble is configured, are judged by `parse_record`, which gives the reason
    for each refusal. Both paths reach the same verdict on every record.
    """
    values = batch.values
    wires = decode_batch(values, limits.record_bytes)
    table = LabelTable()
    fast: list[int] = []
    ws: list[Wire] = []
    if ensemble is None:
        for i, w in enumerate(wires):
            if w is not None and w.predictions and w.id != "" and w.label != "":
                fast.append(i)
                ws.append(w)
    ts, bad = _timestamps([w.ts for w in ws], [batch.fallback_ts[i] for i in fast])
    labels = [w.label for w in ws]
    if int in set(map(type, labels)):
        labels = [label if type(label) is str else str(label) for label in labels]
    truth = table.encode(labels)  # type: ignore[arg-type]
    preds = [w.predictions for w in ws]
    cols = predicted_codes(table, preds, None)
    bad |= cols.bad
    if len(cols.pred) > limits.models:  # some record may have too many entries
        bad |= np.asarray([len(p) > limits.models for p in preds], dtype=bool)
    ids = [w.id for w in ws]
    if int in set(map(type, ids)):  # integer ids must fit in 64 bits; the slow path says why
        bad |= np.asarray([type(i) is int and not ID_MIN <= i <= ID_MAX for i in ids])
    rows = np.asarray(fast, dtype=np.int64)
    keep = ~bad

    by_fast: dict[str, tuple[ModelColumns, NDArray[Any]]] = {}
    for model, pred in cols.pred.items():
        take = keep & (pred >= 0)
        if take.all():
            by_fast[model] = (ModelColumns(model, table.labels, truth, pred, ids, ts), rows)
        elif take.any():
            sel = np.flatnonzero(take)
            by_fast[model] = (
                ModelColumns(
                    model, table.labels, truth[sel], pred[sel], [ids[i] for i in sel], ts[sel]
                ),
                rows[sel],
            )

    slow = sorted(set(range(len(values))) - set(rows[keep].tolist()))
    judged: dict[str, _Judged] = {}
    dead: list[DeadLetter] = []
    rejected_records = rejected_entries = 0
    for i in slow:
        try:
            rec = _judge(values[i], ensemble, limits)
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
    return ParsedBatch(
        by_model, dead, len(values) - rejected_records, rejected_records, rejected_entries
    )
