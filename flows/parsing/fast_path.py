"""Columnar parsing of a batch: the fast path that keeps Python out of the per-record loop.

msgspec decodes a whole batch in one C call and checks the wire types; the rest works column by
column: one list comprehension per field, one per model, and for models that send score maps with
the same labels in every record, a numpy arg-max over the batch. Whatever this path does not
accept outright (a refused or unusual record) it hands back by row, and `flows.parsing.checks`
judges those one by one, so both paths always agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from flows.parsing.labels import Codes, LabelTable, best_label


class Wire(msgspec.Struct, gc=False):
    """The record's wire types, checked in C; the semantics are checked afterwards.

    ``gc=False``: a decoded record is a tree (it cannot hold a reference cycle), so the cyclic
    garbage collector need not track the thousand of them each batch makes.
    """

    id: str | int
    label: str | int
    predictions: dict[str, str | int | dict[str, float]]
    ts: str | int | None = None


class WireStrict(Wire, forbid_unknown_fields=True):
    """`Wire` without extra fields: what the one-call batch decode accepts."""


# The batch decoder refuses unknown fields, so what it accepts is at most three levels deep
# (record, predictions, score map) and needs no nesting check; a record with extra fields takes
# the per-value decode below, which screens nesting first.
_STRICT = msgspec.json.Decoder(WireStrict)


_DECODER = msgspec.json.Decoder(Wire)


class JoinWire(msgspec.Struct, gc=False):
    """`Wire` when delayed labels are joined: a record may lack ``label`` or ``predictions``."""

    id: str | int
    label: str | int | None = None
    predictions: dict[str, str | int | dict[str, float]] | None = None
    ts: str | int | None = None


class JoinWireStrict(JoinWire, forbid_unknown_fields=True):
    """`JoinWire` without extra fields."""


_JOIN_STRICT = msgspec.json.Decoder(JoinWireStrict)
_JOIN_DECODER = msgspec.json.Decoder(JoinWire)


MAX_DEPTH = 64  # deepest nesting of arrays and objects a record may have (README: Bad input)


_OPENERS = re.compile(rb"[{\[]")


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def nesting_depth(value: bytes) -> int:
    """How deeply arrays and objects nest in ``value`` (brackets inside strings do not count).

    Computed on the bytes, without recursion, so a hostile record cannot exhaust the stack.
    """
    structure = _STRING.sub(b"", value)
    steps = np.frombuffer(structure, dtype=np.uint8)
    opens = (steps == ord("{")) | (steps == ord("["))
    closes = (steps == ord("}")) | (steps == ord("]"))
    if not opens.any():
        return 0
    return int(np.cumsum(opens.astype(np.int64) - closes).max())


def too_deep(value: bytes) -> bool:
    """Whether ``value`` nests deeper than `MAX_DEPTH` (cheap unless it has many brackets)."""
    if value.count(b"{") + value.count(b"[") <= MAX_DEPTH:
        return False
    return nesting_depth(value) > MAX_DEPTH


def _decode_one(value: bytes, max_bytes: int, join: bool = False) -> Wire | JoinWire | None:
    if len(value) > max_bytes or too_deep(value):
        return None
    try:
        return (_JOIN_DECODER if join else _DECODER).decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def _aligned(joined: bytes, n: int) -> bool:
    """Whether the documents of the newline-joined batch can only be one per value.

    Every newline is a join and sits between a ``}`` and a ``{``: a JSON string cannot hold a
    raw newline, so no document spans two values, and with ``n`` documents decoded no value
    holds two. (A document count alone can be fooled: a record split over two values next to
    a value holding two documents adds up to the same count.)
    """
    if joined[:1] != b"{" or joined[-1:] != b"}":
        return False
    text = np.frombuffer(joined, dtype=np.uint8)
    newlines = np.flatnonzero(text == ord("\n"))
    return (
        len(newlines) == n - 1
        and bool((text[newlines - 1] == ord("}")).all())
        and bool((text[newlines + 1] == ord("{")).all())
    )


def decode_batch(
    values: Sequence[bytes], max_bytes: int = 1 << 62, join: bool = False
) -> list[Any]:
    """Decode every value; ``None`` where the wire types are wrong or the JSON is broken.

    The common batch (plain records, one per value) is one C call. Anything else is decoded
    value by value, once: a batch of bad records costs one pass, whatever their number or
    place, and which document came from which value is never guessed. ``None`` also marks a
    value longer than ``max_bytes`` or nested deeper than `MAX_DEPTH`; the detailed path
    says why. With ``join`` the items are `JoinWire` (``label`` or ``predictions`` may be
    missing), else `Wire`.
    """
    if not values:
        return []
    joined = b"\n".join(values)
    fits = len(joined) <= max_bytes or max(map(len, values)) <= max_bytes
    if fits and _aligned(joined, len(values)):
        try:
            decoder = _JOIN_STRICT if join else _STRICT
            decoded: list[Any] = list(decoder.decode_lines(joined))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass
        else:
            if len(decoded) == len(values):
                return decoded
    return [_decode_one(v, max_bytes, join) for v in values]


Scores = tuple[list[str], NDArray[np.float64]]  # score-map labels, (rows, labels) scores


@dataclass(slots=True)
class PredictedCodes:
    """Per-model results of the fast path, aligned with the rows it accepted."""

    pred: dict[str, Codes]  # per model; -1 where the record has no entry for it
    bad: NDArray[np.bool_]  # rows the fast path refuses to judge
    # Per model that sent score maps: their labels and scores, NaN where a row's map lacks a
    # label (a row of NaN: no map there).
    scores: dict[str, Scores] = field(default_factory=dict)
    # Models with an entry in every row: those of bare labels, and those of score maps with
    # one key order in every row (that order), as the column ensemble needs them.
    bare: list[str] = field(default_factory=list)
    key_order: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class FastColumns:
    """What a columnar path makes of a batch, before the rows it refuses are judged.

    ``fast`` lists the rows it took (``ids`` .. ``cols`` are aligned with them), ``bad`` those of
    them it hands back to be judged one by one; ``wires`` are the decoded records and
    ``label_rows`` the label halves (with the join); ``shape`` is the models every record names,
    in one order, when they all do (the column ensemble needs it). The Python path
    (`flows.parsing.batches`) and the compiled decoder (`flows.parsing.accel`) both make one.
    """

    wires: list[Any]
    label_rows: list[int]
    fast: list[int]
    table: LabelTable
    ids: list[str | int]
    truth: Codes
    ts: NDArray[np.int64]
    bad: NDArray[np.bool_]
    cols: PredictedCodes
    shape: tuple[str, ...] | None


def _argmax_codes(
    table: LabelTable, keys: tuple[str, ...], entries: list[Any], present: list[dict[str, float]]
) -> tuple[Codes, Scores]:
    """Arg-max over score maps that share ``keys``; ties go to the label that sorts first.

    Also returns the scores, columns in label order, one row per entry (NaN where none).
    """
    k = len(keys)
    order = sorted(range(k), key=keys.__getitem__)
    scores = np.fromiter(
        chain.from_iterable(map(dict.values, present)), dtype=np.float64, count=len(present) * k
    ).reshape(len(present), k)[:, order]
    key_codes = np.asarray([table.code(keys[j]) for j in order], dtype=np.int32)
    best: Codes = key_codes[scores.argmax(axis=1)]
    names = [keys[j] for j in order]
    if len(present) == len(entries):
        return best, (names, scores)
    out = np.full(len(entries), -1, dtype=np.int32)
    rows = [i for i, e in enumerate(entries) if e is not None]
    out[rows] = best
    full = np.full((len(entries), k), np.nan)
    full[rows] = scores
    return out, (names, full)


def _score_matrix(entries: list[Any], bad: NDArray[np.bool_]) -> Scores | None:
    """Scores of the valid score maps among mixed entries (None when there is none)."""
    maps = [(i, e) for i, e in enumerate(entries) if type(e) is dict and not bad[i]]
    if not maps:
        return None
    names = sorted(set(chain.from_iterable(e for _, e in maps)))
    column = {name: j for j, name in enumerate(names)}
    scores = np.full((len(entries), len(names)), np.nan)
    for i, entry in maps:
        for name, score in entry.items():
            scores[i, column[name]] = score
    return names, scores


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


def predicted_codes(
    table: LabelTable, preds: list[dict[str, Any]], reserved: str | None
) -> PredictedCodes:
    """Predicted label codes per model for rows whose records passed the record-level checks."""
    n = len(preds)
    bad = np.zeros(n, dtype=bool)
    out: dict[str, Codes] = {}
    scores: dict[str, Scores] = {}
    bare: list[str] = []
    key_order: dict[str, tuple[str, ...]] = {}
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
            if present is entries:
                bare.append(model)
        elif kinds == {dict}:
            keysets = set(map(tuple, present))
            keys = next(iter(keysets))
            if len(keysets) == 1 and keys and "" not in keys:
                out[model], scores[model] = _argmax_codes(table, keys, entries, present)
                if present is entries:
                    key_order[model] = keys
                continue
            out[model] = _one_by_one(table, entries, bad)
        else:
            out[model] = _one_by_one(table, entries, bad)
        if dict in kinds:
            mixed = _score_matrix(entries, bad)
            if mixed is not None:
                scores[model] = mixed
    return PredictedCodes(out, bad, scores, bare, key_order)
