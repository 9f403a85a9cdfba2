"""The optional compiled decoder: a plain batch's columns in one call, or None.

`accel/` (Rust, PyO3, built by maturin) reads a whole batch of records into the columns the
columnar fast path builds: ids, truth codes, times, each model's predicted codes and score
matrix, the batch's label table. It takes a batch only whole, and only when every record is of
the plain shape (the fields ``id``, ``label``, ``predictions`` and ``ts``, no escapes in strings,
integers within 64 bits, every value one the checks accept); for anything else it returns None
and `flows.parsing.batches.parse_batch` parses the batch in Python, the reference, which also
gives every refusal its reason. So verdicts, reasons and columns are the same with it or without
it (tests/unit/test_accel.py compares both on every test stream).

It is optional: ``scripts/install`` builds it when a Rust toolchain is present, and the job
uses it when it is installed unless ``CONFUSION_ACCEL=off``; ``CONFUSION_ACCEL=on`` makes its
absence an error at start instead of a silent fallback.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.limits import Limits
from flows.parsing.fast_path import FastColumns, PredictedCodes, Scores
from flows.parsing.labels import LabelTable


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("confusion_accel")
    except ImportError:  # no Rust toolchain when installed: the pure-Python path runs
        return None


_native = _load()


def decode(
    values: Sequence[bytes], fallback_ts: Sequence[int], limits: Limits, reserved: str | None
) -> FastColumns | None:
    """The batch's columns, or None: parse it in Python (also when no decoder is installed)."""
    if _native is None or not values:
        return None
    got: Any = _native.decode_columns(
        values if type(values) is list else list(values),
        limits.record_bytes,
        limits.models,
        reserved,
    )
    if got is None:
        return None
    labels, ids, truth, ts_bytes, missing, models, shape = got
    ts = np.frombuffer(ts_bytes, dtype=np.int64)
    if missing:
        ts[missing] = [fallback_ts[i] for i in missing]
    n = len(ids)
    pred: dict[str, NDArray[np.int32]] = {}
    scores: dict[str, Scores] = {}
    bare: list[str] = []
    key_order: dict[str, tuple[str, ...]] = {}
    for name, codes, keys, matrix, is_bare, order in models:
        pred[name] = np.frombuffer(codes, dtype=np.int32)
        if keys is not None:
            scores[name] = (keys, np.frombuffer(matrix, dtype=np.float64).reshape(n, len(keys)))
        if is_bare:
            bare.append(name)
        if order is not None:
            key_order[name] = order
    return FastColumns(  # every row taken, none handed back
        [],
        [],
        list(range(n)),
        LabelTable(labels),
        ids,
        np.frombuffer(truth, dtype=np.int32),
        ts,
        np.zeros(n, dtype=bool),
        PredictedCodes(pred, np.zeros(n, dtype=bool), scores, bare, key_order),
        shape,
    )
