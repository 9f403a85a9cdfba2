"""Columnar parsing of a batch: the fast path that keeps Python out of the per-record loop.

msgspec decodes a whole batch in one C call and checks the wire types; the rest works column by
column: one list comprehension per field, one per model, and for models that send score maps with
the same labels in every record, a numpy arg-max over the batch. Whatever this path does not
accept outright (a refused or unusual record) it hands back by row, and `flows.records` judges
those one by one, so both paths always agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

Codes = NDArray[np.int32]


class Wire(msgspec.Struct):
    """The record's wire types, checked in C; the semantics are checked afterwards."""

    id: str | int
    label: str | int
    predictions: dict[str, str | int | dict[str, float]]
    ts: str | int | None = None


_DECODER = msgspec.json.Decoder(Wire)
_AT_RECORD = re.compile(r"at `\$\[(\d+)\]")
_AT_BYTE = re.compile(r"\(byte (\d+)\)")


def _failed_value(exc: Exception, values: Sequence[bytes]) -> int | None:
    """Which value of a newline-joined batch made msgspec fail, if its message says."""
    found = _AT_RECORD.search(str(exc))
    if found:
        return int(found.group(1))
    offset: int | None = exc.start if isinstance(exc, UnicodeDecodeError) else None
    found = _AT_BYTE.search(str(exc))
    if found:
        offset = int(found.group(1))
    if offset is not None:
        pos = 0
        for i, value in enumerate(values):
            pos += len(value) + 1
            if offset < pos:
                return i
    return None


def _decode_one(value: bytes) -> Wire | None:
    try:
        return _DECODER.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def decode_batch(values: Sequence[bytes]) -> list[Wire | None]:
    """Decode every value; ``None`` where the wire types are wrong or the JSON is broken.

    A failure is located from msgspec's message and the batch split around it, so one bad
    record costs two more decode calls rather than a per-value pass.
    """
    if not values:
        return []
    joined = b"\n".join(values)
    # One line per value, none blank: then as many documents as values means one per value
    # (a value with two documents or a newline inside cannot hide behind a blank one).
    if (joined.count(b"\n") != len(values) - 1 or b"" in values
            or any(map(bytes.isspace, values))):
        return [_decode_one(v) for v in values]
    try:
        decoded: list[Wire | None] = list(_DECODER.decode_lines(joined))
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        bad = _failed_value(exc, values)
        if bad is None:
            return [_decode_one(v) for v in values]
        return [*decode_batch(values[:bad]), None, *decode_batch(values[bad + 1:])]
    if len(decoded) != len(values):  # a value held several documents
        return [_decode_one(v) for v in values]
    return decoded


class LabelTable:
    """Labels in order of first appearance, each with a small-integer code that never changes.

    A batch has one (its models share it); each window has its own and maps the batch's codes
    to its own once per batch.
    """

    __slots__ = ("index", "labels")

    def __init__(self, labels: Sequence[str] = ()) -> None:
        self.labels: list[str] = list(labels)
        self.index: dict[str, int] = {label: i for i, label in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def code(self, label: str) -> int:
        code = self.index.get(label)
        if code is None:
            code = self.index[label] = len(self.labels)
            self.labels.append(label)
        return code

    def encode(self, names: Sequence[str | None]) -> Codes:
        """Codes of ``names``; None (a missing entry) becomes -1."""
        get = self.index.get
        codes = [get(name, -1) for name in names]  # type: ignore[arg-type]
        if -1 in codes:
            for name in dict.fromkeys(names):  # distinct names, in order of appearance
                if name is not None and name not in self.index:
                    self.code(name)
            codes = [get(name, -1) for name in names]  # type: ignore[arg-type]
        return np.asarray(codes, dtype=np.int32)


@dataclass(slots=True)
class Columns:
    """Per-model results of the fast path, aligned with the rows it accepted."""

    pred: dict[str, Codes]  # per model; -1 where the record has no entry for it
    bad: NDArray[np.bool_]  # rows the fast path refuses to judge


def best_label(scores: dict[str, float]) -> str:
    """The label with the highest score, ties going to the label that sorts first."""
    best = max(scores, key=scores.__getitem__)
    top = scores[best]
    if list(scores.values()).count(top) > 1:
        best = min(label for label, score in scores.items() if score == top)
    return best


def _argmax_codes(table: LabelTable, keys: tuple[str, ...], entries: list[Any],
                  present: list[dict[str, float]]) -> Codes:
    """Arg-max over score maps that share ``keys``; ties go to the label that sorts first."""
    k = len(keys)
    order = sorted(range(k), key=keys.__getitem__)
    scores = np.fromiter(chain.from_iterable(map(dict.values, present)), dtype=np.float64,
                         count=len(present) * k).reshape(len(present), k)[:, order]
    key_codes = np.asarray([table.code(keys[j]) for j in order], dtype=np.int32)
    best: Codes = key_codes[scores.argmax(axis=1)]
    if len(present) == len(entries):
        return best
    out = np.full(len(entries), -1, dtype=np.int32)
    out[[i for i, e in enumerate(entries) if e is not None]] = best
    return out


def _one_by_one(table: LabelTable, entries: list[Any], bad: NDArray[np.bool_]) -> Codes:
    """The general case: mixed kinds or differing score labels, judged entry by entry."""
    names: list[str | None] = []
    for i, entry in enumerate(entries):
        kind = type(entry)
        if entry is None:
            names.append(None)
        elif kind is str and entry:
            names.append(entry)
        elif kind is int:
            names.append(str(entry))
        elif kind is dict and entry and "" not in entry:
            names.append(best_label(entry))
        else:
            bad[i] = True
            names.append(None)
    return table.encode(names)


def predictions(table: LabelTable, preds: list[dict[str, Any]], reserved: str | None) -> Columns:
    """Predicted label codes per model for rows whose records passed the record-level checks."""
    n = len(preds)
    bad = np.zeros(n, dtype=bool)
    out: dict[str, Codes] = {}
    for model in dict.fromkeys(chain.from_iterable(preds)):
        entries = [p.get(model) for p in preds]
        if not model or model == reserved:
            bad |= np.asarray([e is not None for e in entries])
            continue
        kinds = set(map(type, entries))
        present: list[Any] = entries
        if type(None) in kinds:
            kinds.discard(type(None))
            present = [e for e in entries if e is not None]
        if kinds == {str} and "" not in present:
            out[model] = table.encode(entries)
        elif kinds == {dict}:
            keysets = set(map(tuple, present))
            keys = next(iter(keysets))
            if len(keysets) == 1 and keys and "" not in keys:
                out[model] = _argmax_codes(table, keys, entries, present)
            else:
                out[model] = _one_by_one(table, entries, bad)
        else:
            out[model] = _one_by_one(table, entries, bad)
    return Columns(out, bad)
