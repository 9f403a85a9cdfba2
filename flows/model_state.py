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

from bytewax.operators import StatefulBatchLogic

from flows.errors import SnapshotError
from flows.output.documents import Document as Doc
from flows.output.documents import document, now_ms
from flows.records import ModelColumns
from flows.time_windows import TimeWindow
from flows.windows import CountWindow

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """The window (``size`` records, or ``duration_ms`` of event time when ``kind`` is
    "time") and how often a model's document is emitted."""

    size: int
    emit_every: int
    kind: str = "count"
    duration_ms: int = 0

    def new_window(self) -> CountWindow | TimeWindow:
        return TimeWindow(self.duration_ms) if self.kind == "time" else CountWindow(self.size)

    def restore_window(self, state: dict[str, Any]) -> CountWindow | TimeWindow:
        if self.kind == "time":
            return TimeWindow.restore(state, self.duration_ms)
        return CountWindow.restore(state, self.size)


class ModelWindowLogic(StatefulBatchLogic[ModelColumns, Doc, dict[str, Any]]):
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

    def on_batch(self, values: list[ModelColumns]) -> tuple[list[Doc], bool]:
        docs: list[Doc] = []
        every = self.policy.emit_every
        window = self.window
        for cols in values:
            self.model = cols.model
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

    def on_eof(self) -> tuple[list[Doc], bool]:
        if self.window.seq > self.emitted_seq:
            return [self._emit()], StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "model": self.model, "window": self.window.snapshot(),
                "emitted_seq": self.emitted_seq}
