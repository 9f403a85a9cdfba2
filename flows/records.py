"""Prediction records: the input schema, its validation, and batch parsing into per-model columns.

Everything here is pure: bytes in, columns and rejections out. Sources hand over a `RawBatch` (the
raw message bytes, a fallback timestamp per message, where each came from); `parse_batch` turns it
into one `ModelColumns` per model plus a `DeadLetter` for each record or model entry it refuses.
The batch shape is what keeps per-record overhead low: the dataflow moves one item per batch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from flows.columns import (
    MAX_DEPTH,
    LabelTable,
    Wire,
    best_label,
    decode_batch,
    predictions,
    too_deep,
)
from flows.ensemble import Ensemble, NoVerdict
from flows.limits import Limits, reached

# Epoch milliseconds that datetime can represent (years 1..9999).
_MIN_MS = -62_135_596_800_000
_MAX_MS = 253_402_300_799_999
ID_MIN, ID_MAX = -(2**63), 2**63 - 1  # integer ids must fit Elasticsearch's long
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# RFC 3339 section 5.6 date-time; T and Z may be lower case and a space may separate date and
# time (its note). No week dates, basic format, comma fractions or +0000 offsets.
_RFC3339_FORM = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                 r"(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})")
_RFC3339 = re.compile(_RFC3339_FORM + r"\Z")
_RFC3339_LINES = re.compile(f"{_RFC3339_FORM}(?:\n{_RFC3339_FORM})*")
_ONE_MS = timedelta(milliseconds=1)


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
        doc: dict[str, Any] = {"reason": self.reason,
                               "scope": "record" if self.model is None else "entry",
                               "source": {"origin": self.origin, "position": self.position,
                                          **self.headers}}
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


class RecordError(ValueError):
    """Why a record (or one model entry) is refused; the message is the dead-letter reason."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(raw: bytes, max_bytes: int | None = None) -> tuple[Any, bool]:
    """Decode one JSON document; also say whether its text must be checked for surrogates.

    msgspec decodes first (integers of any size stay exact). What it refuses the stdlib decodes
    again, because some of it is valid JSON the contract judges more finely: a score of 1e400 is
    a refused entry, not a broken record. The stdlib lets unpaired UTF-16 surrogate escapes
    through, which no sink can encode, so those documents need `parse_record`'s text checks.
    Size and nesting are checked on the bytes first, so neither decoder can exhaust memory or
    the stack.
    """
    if max_bytes is not None and len(raw) > max_bytes:
        raise RecordError(reached("CONFUSION_MAX_RECORD_BYTES",
                                  f"record is longer than CONFUSION_MAX_RECORD_BYTES="
                                  f"{max_bytes} bytes"))
    if too_deep(raw):
        raise RecordError(f"arrays and objects nest deeper than {MAX_DEPTH} levels")
    try:
        return msgspec.json.decode(raw), False
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        first = str(exc)
        # Only a number out of range (ValidationError) or a \u escape (a lone surrogate) can
        # be JSON the stdlib reads; anything else it refuses too, so do not pay for asking it.
        retry = isinstance(exc, msgspec.ValidationError) or b"\\u" in raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not retry:
        raise RecordError(f"not valid JSON: {first}")
    try:
        return json.loads(text, parse_constant=_reject_constant), True
    except (ValueError, RecursionError):
        raise RecordError(f"not valid JSON: {first}") from None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text(value: str, what: str) -> None:
    if _has_surrogate(value):
        raise RecordError(f"{what} holds an unpaired UTF-16 surrogate escape")


def label_of(value: Any, what: str) -> str:
    """A label is a non-empty string; an integer stands for its decimal string."""
    if type(value) is str:
        if value:
            return value
        raise RecordError(f"{what} is an empty string")
    if type(value) is int:
        return str(value)
    raise RecordError(f"{what} must be a non-empty string or an integer, got {_json_type(value)}")


def timestamp_ms(value: Any, form_checked: bool = False) -> int:
    """Epoch milliseconds from an RFC 3339 string or an integer of epoch milliseconds.

    ``form_checked``: the caller has already matched the string against the RFC 3339 form.
    """
    if type(value) is int:
        if _MIN_MS <= value <= _MAX_MS:
            return value
        raise RecordError(f"'ts' {value} is out of range for epoch milliseconds")
    if type(value) is not str:
        raise RecordError("'ts' must be an RFC 3339 string or epoch milliseconds (integer), "
                          f"got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:  # RFC 3339 also allows a lowercase "t" and "z"
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            raise RecordError(f"'ts' is not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None or len(value) < 20:
        raise RecordError(f"'ts' needs a date, a time and a UTC offset (RFC 3339): {value!r}")
    if not form_checked and _RFC3339.match(value) is None:  # fromisoformat takes other forms
        raise RecordError(f"'ts' is ISO 8601 but not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.frac] and "
                          f"Z or +HH:MM): {value!r}")
    ms: int = (parsed - _EPOCH) // _ONE_MS  # exact integer arithmetic; sub-ms digits floored
    if not _MIN_MS <= ms <= _MAX_MS:
        raise RecordError(f"'ts' {value!r} is out of range: in UTC it falls outside years "
                          "1 to 9999")
    return ms


def argmax_label(scores: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """The label with the highest score, ties going to the label that sorts first.

    Returns the label and the validated scores (needed by the ensemble).
    """
    if not scores:
        raise RecordError("empty score map")
    checked: dict[str, float] = {}
    for label, score in scores.items():
        if not label:
            raise RecordError("score map has an empty label")
        if type(score) is not float:
            if type(score) is int:
                try:
                    score = float(score)
                except OverflowError:
                    raise RecordError(f"score of {label!r} is not a finite number") from None
            else:
                raise RecordError(f"score of {label!r} is not a number: {score!r}")
        if not math.isfinite(score):
            raise RecordError(f"score of {label!r} is not a finite number: {score!r}")
        checked[label] = score
    return best_label(checked), checked


def predicted(entry: Any) -> tuple[str, dict[str, float] | None]:
    """The predicted label of one model entry, and its scores when it has a score map."""
    if type(entry) is str:
        if entry:
            return entry, None
        raise RecordError("predicted label is an empty string")
    if type(entry) is dict:
        return argmax_label(entry)
    if type(entry) is int:
        return str(entry), None
    raise RecordError("prediction must be a label (string or integer) or a map of label to "
                      f"score, got {_json_type(entry)}")


@dataclass(frozen=True, slots=True)
class Record:
    """One valid record, with its valid model entries (for the flow tests and the tools)."""

    id: str | int
    ts: int | None
    label: str
    predictions: dict[str, str]
    entry_errors: dict[str, str]


def parse_record(obj: Any, ensemble: Ensemble | None = None, check_text: bool = False,
                 max_models: int | None = None) -> Record:
    """Validate one decoded record; raise RecordError if the record as a whole is refused.

    ``check_text`` asks for the surrogate checks `decode` says the document needs;
    ``max_models`` is CONFUSION_MAX_MODELS.
    """
    if type(obj) is not dict:
        raise RecordError(f"record must be a JSON object, got {_json_type(obj)}")
    if "id" not in obj:
        raise RecordError("missing 'id'")
    rid = obj["id"]
    if not ((type(rid) is str and rid) or type(rid) is int):
        raise RecordError(f"'id' must be a non-empty string or an integer, got {_json_type(rid)}")
    if type(rid) is int and not ID_MIN <= rid <= ID_MAX:
        raise RecordError("'id' is an integer that does not fit in 64 bits")
    if check_text and type(rid) is str:
        _check_text(rid, "'id'")
    if "label" not in obj:
        raise RecordError("missing 'label'")
    label = label_of(obj["label"], "'label'")
    if check_text:
        _check_text(label, "'label'")
    raw_ts = obj.get("ts")
    ts = None if raw_ts is None else timestamp_ms(raw_ts)
    if "predictions" not in obj:
        raise RecordError("missing 'predictions'")
    entries = obj["predictions"]
    if type(entries) is not dict:
        raise RecordError(f"'predictions' must be an object of model to prediction, "
                          f"got {_json_type(entries)}")
    if not entries:
        raise RecordError("'predictions' is empty")
    if max_models is not None and len(entries) > max_models:
        raise RecordError(reached("CONFUSION_MAX_MODELS",
                                  f"record has {len(entries)} model entries, more than "
                                  f"CONFUSION_MAX_MODELS={max_models}"))
    preds: dict[str, str] = {}
    errors: dict[str, str] = {}
    scored: list[tuple[str, str, dict[str, float] | None]] = []
    for model, entry in entries.items():
        try:
            if not model:
                raise RecordError("model name is empty")
            if ensemble is not None and model == ensemble.name:
                raise RecordError(f"model name {model!r} is reserved for the ensemble "
                                  "(CONFUSION_ENSEMBLE_NAME)")
            pred, scores = predicted(entry)
            if check_text:
                _check_text(model, "model name")
                for text in scores or (pred,):
                    _check_text(text, "predicted label")
        except RecordError as exc:
            errors[model] = f"model {model!r}: {exc}"
            continue
        preds[model] = pred
        scored.append((model, pred, scores))
    if not preds:
        raise RecordError("no valid model entry: " + "; ".join(errors.values()))
    if ensemble is not None:
        try:
            combined = ensemble.predict(scored)
        except NoVerdict as exc:
            errors[ensemble.name] = f"model {ensemble.name!r}: {exc}"
            combined = None
        if combined is not None:
            preds[ensemble.name] = combined
    return Record(rid, ts, label, preds, errors)


def _timestamps(raw: list[str | int | None], fallback: list[int]
                ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Epoch ms per row, and which rows have a ``ts`` that `timestamp_ms` refuses."""
    bad = np.zeros(len(raw), dtype=bool)
    if set(map(type, raw)) == {int}:
        try:
            ts = np.asarray(raw, dtype=np.int64)
        except OverflowError:
            pass
        else:
            return ts, (ts < _MIN_MS) | (ts > _MAX_MS)
    # One regex call checks the RFC 3339 form of a batch of strings (no string of that form
    # holds a newline, so the join cannot make a bad one pass).
    checked = (bool(raw) and set(map(type, raw)) == {str}
               and _RFC3339_LINES.fullmatch("\n".join(raw)) is not None)  # type: ignore[arg-type]
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


def _merge(model: str, table: LabelTable, fast: ModelColumns | None, fast_rows: NDArray[Any],
           judged: _Judged) -> ModelColumns:
    """Interleave fast-path and one-by-one rows of a model back into read order."""
    truth = table.encode(judged.truth)
    pred = table.encode(judged.pred)
    ts = np.asarray(judged.ts, dtype=np.int64)
    if fast is None:
        return ModelColumns(model, table.labels, truth, pred, judged.ids, ts)
    rows = np.concatenate([fast_rows, np.asarray(judged.rows, dtype=fast_rows.dtype)])
    order = np.argsort(rows, kind="stable")
    ids = fast.ids + judged.ids
    return ModelColumns(model, table.labels, np.concatenate([fast.truth, truth])[order],
                        np.concatenate([fast.pred, pred])[order], [ids[i] for i in order],
                        np.concatenate([fast.ts, ts])[order])


def _judge(raw: bytes, ensemble: Ensemble | None, limits: Limits) -> Record:
    obj, check_text = decode(raw, limits.record_bytes)
    return parse_record(obj, ensemble, check_text, limits.models)


DEFAULT_LIMITS = Limits()


def parse_batch(batch: RawBatch, ensemble: Ensemble | None = None,
                limits: Limits = DEFAULT_LIMITS) -> ParsedBatch:
    """Parse a batch into per-model columns, keeping read order within each model.

    Well-formed records take the columnar fast path (`flows.columns`); the rest, and every
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
    cols = predictions(table, preds, None)
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
            by_fast[model] = (ModelColumns(model, table.labels, truth[sel], pred[sel],
                                           [ids[i] for i in sel], ts[sel]), rows[sel])

    slow = sorted(set(range(len(values))) - set(rows[keep].tolist()))
    judged: dict[str, _Judged] = {}
    dead: list[DeadLetter] = []
    rejected_records = rejected_entries = 0
    for i in slow:
        try:
            rec = _judge(values[i], ensemble, limits)
        except RecordError as exc:
            rejected_records += 1
            dead.append(DeadLetter(bytes(values[i]), str(exc), batch.origin,
                                   batch.positions[i], None, batch.headers))
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
            dead.append(DeadLetter(bytes(values[i]), reason, batch.origin, batch.positions[i],
                                   model, batch.headers))

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
    return ParsedBatch(by_model, dead, len(values) - rejected_records, rejected_records,
                       rejected_entries)
