"""Per-model window state as a Bytewax stateful operator: when to emit, and what survives a crash.

This is the only place the core meets Bytewax: `ModelWindowLogic` feeds each batch of a model's
records to its `CountWindow`, emits a document whenever the model's record count crosses a
multiple of ``emit_every`` (the exact record, even inside a batch), and a final one at the end of
a bounded input. Its snapshot is the window's versioned copy plus the last emitted count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from bytewax.operators import StatefulBatchLogic

from flows.columns import LabelTable
from flows.documents import document, now_ms
from flows.errors import SnapshotError
from flows.limits import MAX_CLASSES, reached
from flows.records import DeadLetter, ModelColumns
from flows.time_windows import TimeWindow
from flows.windows import CountWindow

STATE_VERSION = 1

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """The window (``size`` records, or ``duration_ms`` of event time when ``kind`` is
    "time") and how often a model's document is emitted."""

    size: int
    emit_every: int
    kind: str = "count"
    duration_ms: int = 0
    max_classes: int = MAX_CLASSES

    def new_window(self) -> CountWindow | TimeWindow:
        return TimeWindow(self.duration_ms) if self.kind == "time" else CountWindow(self.size)

    def restore_window(self, state: dict[str, Any]) -> CountWindow | TimeWindow:
        if self.kind == "time":
            return TimeWindow.restore(state, self.duration_ms)
        return CountWindow.restore(state, self.size)


def over_class_limit(known: LabelTable, cols: ModelColumns, limit: int) -> list[int]:
    """Rows whose labels would take the model past ``limit`` classes (truth and predictions).

    Rows are judged in read order, as if they came one by one: a row is admitted when all its
    new labels still fit, so the verdict does not depend on how the stream was batched. The
    common case (every label known, or room for all new ones) costs two bincounts.
    """
    n_labels = len(cols.labels)
    if len(known) + n_labels <= limit:  # room even if every label of the batch were new
        return []
    used = np.flatnonzero(np.bincount(cols.truth, minlength=n_labels)
                          + np.bincount(cols.pred, minlength=n_labels))
    new = [int(c) for c in used if cols.labels[c] not in known.index]
    if len(known) + len(new) <= limit:
        return []
    is_new = np.zeros(n_labels, dtype=bool)
    is_new[new] = True
    room = limit - len(known)
    admitted: set[int] = set()
    refused: list[int] = []
    for row in np.flatnonzero(is_new[cols.truth] | is_new[cols.pred]).tolist():
        need = {int(cols.truth[row]), int(cols.pred[row])} - admitted
        need = {c for c in need if is_new[c]}
        if len(need) <= room:
            admitted |= need
            room -= len(need)
        else:
            refused.append(row)
    return refused


def _class_letters(cols: ModelColumns, rows: list[int], limit: int) -> list[DeadLetter]:
    """Dead letters of refused rows; ``raw`` is the refused entry as a record of its own, so
    replaying it after raising the limit counts exactly what was refused."""
    letters = []
    for row in rows:
        truth, pred = cols.labels[cols.truth[row]], cols.labels[cols.pred[row]]
        reason = reached("CONFUSION_MAX_CLASSES",
                         f"model {cols.model!r} already holds its limit of {limit} classes "
                         f"(CONFUSION_MAX_CLASSES) and this record brings a new one")
        raw = orjson.dumps({"id": cols.ids[row], "ts": int(cols.ts[row]), "label": truth,
                            "predictions": {cols.model: pred}})
        position = -1 if cols.positions is None else int(cols.positions[row])
        letters.append(DeadLetter(raw, reason, cols.origin, position, cols.model, cols.headers))
    return letters


def _without(cols: ModelColumns, rows: list[int]) -> ModelColumns:
    keep = np.ones(len(cols), dtype=bool)
    keep[rows] = False
    sel = np.flatnonzero(keep)
    return ModelColumns(cols.model, cols.labels, cols.truth[sel], cols.pred[sel],
                        [cols.ids[i] for i in sel.tolist()], cols.ts[sel], cols.origin,
                        None if cols.positions is None else cols.positions[sel], cols.headers)


class ModelWindowLogic(StatefulBatchLogic[ModelColumns, Doc | DeadLetter, dict[str, Any]]):
    """One model's window inside the dataflow (one instance per model key)."""

    def __init__(self, policy: WindowPolicy, resume: dict[str, Any] | None,
                 clock: Callable[[], int] = now_ms) -> None:
        # Bytewax does not pass the key to the builder: the name arrives with the first batch.
        self.model = "" if resume is None else resume["model"]
        self.policy = policy
        self.clock = clock
        self.window: CountWindow | TimeWindow
        if resume is None:
            self.window = policy.new_window()
            self.emitted_seq = 0
        else:
            if resume.get("v") != STATE_VERSION:
                raise SnapshotError(f"state of model {self.model!r} has version "
                                    f"{resume.get('v')!r}, this build reads {STATE_VERSION}")
            self.window = policy.restore_window(resume["window"])
            self.emitted_seq = resume["emitted_seq"]

    def _emit(self) -> Doc:
        self.emitted_seq = self.window.seq
        return document(self.model, self.window.view(), self.clock())

    def on_batch(self, values: list[ModelColumns]) -> tuple[list[Doc | DeadLetter], bool]:
        """Documents at each emission point, and dead letters of records over the class limit."""
        docs: list[Doc | DeadLetter] = []
        every = self.policy.emit_every
        window = self.window
        for cols in values:
            self.model = cols.model
            refused = over_class_limit(window.codes, cols, self.policy.max_classes)
            if refused:
                docs += _class_letters(cols, refused, self.policy.max_classes)
                cols = _without(cols, refused)
            truth, pred = window.encode(cols.labels, cols.truth, cols.pred)
            window.log(cols.ids, cols.ts)
            pos, n = 0, len(cols)
            while pos < n:
                # Feed up to the next multiple of emit_every, then emit at exactly that record.
                end = pos + min(n - pos, every - window.seq % every)
                window.add_codes(truth[pos:end], pred[pos:end], cols.ts[pos:end])
                pos = end
                if window.seq % every == 0:
                    docs.append(self._emit())
            window.forget()
        return docs, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Doc | DeadLetter], bool]:
        if self.window.seq > self.emitted_seq:
            return [self._emit()], StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "model": self.model, "window": self.window.snapshot(),
                "emitted_seq": self.emitted_seq}
