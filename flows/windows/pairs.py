"""Pair codes and label codes: the counting kernel every window kind shares.

A window codes each record as one small integer ``truth * capacity + pred``; the matrix is the
bincount of those codes, and a record leaves by subtracting the bincount of its code, so
eviction is exactly addition undone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.parsing.labels import LabelTable

Codes = NDArray[np.integer[Any]]
Counts = NDArray[np.int64]


def pair_counts(pairs: Codes, cap: int) -> Counts:
    """Count matrix of pair codes ``truth * cap + pred``: rows are truth, columns prediction.

    The one kernel windows add with and evict with, so eviction is exactly addition undone.
    """
    return np.bincount(pairs, minlength=cap * cap).reshape(cap, cap)


def code_dtype(n_labels: int) -> np.dtype[Any]:
    """The smallest unsigned dtype that holds every code: one byte per code up to 256 labels."""
    if n_labels <= 1 << 8:
        return np.dtype(np.uint8)
    if n_labels <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class LabelCodes(LabelTable):
    """A window's label table, which also notes the record each label first appeared in.

    Codes never change once given, so the ring never needs re-encoding; the sorted order the
    documents need is applied only when a document is built.
    """

    __slots__ = ("first_seen",)

    def __init__(self, labels: Sequence[str] = ()) -> None:
        super().__init__(labels)
        # Record number at which each label first appeared (-1: before this window existed),
        # so a document emitted part way through a batch lists only labels seen by then.
        self.first_seen: list[int] = [-1] * len(self.labels)

    def code(self, label: str) -> int:
        if label not in self.index:
            self.first_seen.append(-1)
        return super().code(label)
