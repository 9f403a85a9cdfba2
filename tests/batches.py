"""Builds the columns the parser hands a window, from plain labels: for window-level tests.

The job's windows are fed `ModelColumns` by `flows.parsing.batches.parse_batch`; tests that
exercise a window alone build the same shape here: batch-local label codes, ids, and times as an
array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flows.parsing.batches import ModelColumns


def model_batch(
    truth: Sequence[str],
    pred: Sequence[str],
    ids: Sequence[str | int],
    ts: Sequence[int],
    model: str = "m",
) -> ModelColumns:
    """One model's records as columns; labels coded in order of first appearance."""
    table: dict[str, int] = {}
    t = [table.setdefault(label, len(table)) for label in truth]
    p = [table.setdefault(label, len(table)) for label in pred]
    return ModelColumns(
        model,
        list(table),
        np.asarray(t, dtype=np.int32),
        np.asarray(p, dtype=np.int32),
        list(ids),
        np.asarray(ts, dtype=np.int64),
    )
