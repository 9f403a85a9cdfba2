"""Label tables: each label a small-integer code that never changes, and the arg-max tie rule.

A batch has one table (its models share it); each window has its own (`flows.windows.pairs`) and
maps the batch's codes to its own once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
from numpy.typing import NDArray

Codes = NDArray[np.int32]


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
        """Codes of ``names``; None (a missing entry) becomes -1.

        New labels are interned once per call, in order of first appearance; the codes are
        then looked up in C (``map`` over the index), with no Python step per name.
        """
        index = self.index
        for name in dict.fromkeys(names):  # distinct names, in order of appearance
            if name is not None and name not in index:
                self.code(name)
        return np.fromiter(
            map(index.get, names, repeat(-1)),  # type: ignore[arg-type]
            dtype=np.int32,
            count=len(names),
        )


def best_label(scores: dict[str, float]) -> str:
    """The label with the highest score, ties going to the label that sorts first."""
    best = max(scores, key=scores.__getitem__)
    top = scores[best]
    if list(scores.values()).count(top) > 1:
        best = min(label for label, score in scores.items() if score == top)
    return best
