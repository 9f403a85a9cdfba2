"""Per-model window state as a Bytewax stateful operator: when to emit, and what survives a crash.

This is the only place the core meets Bytewax: `ModelWindowLogic` adds each batch of a model's
records to its window, emits a document whenever the model's record count crosses a multiple of
``emit_every`` (the exact record, even inside a batch), and a final one at the end of a bounded
input. Its snapshot is the window's versioned copy plus the last emitted count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict

from bytewax.operators import StatefulBatchLogic

from flows.documents import document, now_ms
from flows.errors import SnapshotError
from flows.records import ModelColumns
from flows.windows.base import SlidingWindow, WindowPolicy, WindowSnapshot

STATE_VERSION: Literal[1] = 1

Doc = dict[str, Any]


class ModelState(TypedDict):
    """One model's checkpoint: its window and the ``seq`` of its last document."""

    v: Literal[1]
    model: str
    window: WindowSnapshot
    emitted_seq: int


class ModelWindowLogic(StatefulBatchLogic[ModelColumns, Doc, ModelState]):
    """One model's window inside the dataflow (one instance per model key)."""

    def __init__(self, policy: WindowPolicy[Any, Any], emit_every: int,
                 resume: ModelState | None, clock: Callable[[], int] = now_ms) -> None:
        # Bytewax does not pass the key to the builder: the name arrives with the first batch.
        self.model = "" if resume is None else resume["model"]
        self.emit_every = emit_every
        self.clock = clock
        self.window: SlidingWindow
        if resume is None:
            self.window = policy.new()
            self.emitted_seq = 0
        else:
            if resume.get("v") != STATE_VERSION:
                raise SnapshotError(f"state of model {self.model!r} has version "
                                    f"{resume.get('v')!r}, this build reads {STATE_VERSION}")
            self.window = policy.restore(resume["window"])
            self.emitted_seq = resume["emitted_seq"]

    def on_batch(self, values: list[ModelColumns]) -> tuple[list[Doc], bool]:
        docs: list[Doc] = []
        for batch in values:
            self.model = batch.model
            for view in self.window.add(batch, self.emit_every):
                docs.append(document(self.model, view, self.clock()))
                self.emitted_seq = view.seq
        return docs, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Doc], bool]:
        if self.window.seq > self.emitted_seq:
            view = self.window.view()
            self.emitted_seq = view.seq
            return [document(self.model, view, self.clock())], StatefulBatchLogic.RETAIN
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> ModelState:
        return {"v": STATE_VERSION, "model": self.model, "window": self.window.snapshot(),
                "emitted_seq": self.emitted_seq}
