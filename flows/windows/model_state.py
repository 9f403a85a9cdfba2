"""Per-model window state as a Bytewax stateful operator: when to emit, and what survives a crash.

This is the only place the core meets Bytewax: `ModelWindowLogic` adds each batch of a model's
records to its window, emits a document whenever the model's record count crosses a multiple of
``emit_every`` (the exact record, even inside a batch), and a final one at the end of a bounded
input. Records that would take a model past ``CONFUSION_MAX_CLASSES`` labels are refused here,
as dead letters. Its snapshot is the window's versioned copy plus the last emitted count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np
import orjson
from bytewax.operators import StatefulBatchLogic

from flows.errors import SnapshotError
from flows.limits import MAX_CLASSES, reached
from flows.output.alerts import AlertBook, AlertPolicy
from flows.output.documents import Document, document, iso_ms, now_ms, window_info
from flows.parsing.batches import DeadLetter, ModelColumns
from flows.parsing.labels import LabelTable
from flows.windows.base import SlidingWindow, WindowPolicy, WindowSnapshot, WindowView
from flows.windows.drift import Change, DriftConfig, DriftWatch, true_class_scores
from flows.windows.join_store import JoinCounts
from flows.windows.latency import JoinLedger, LatencySnapshot

STATE_VERSION: Literal[1] = 1
Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Alerting:
    """What watches each model: its change detectors and the rules on its documents."""

    drift: DriftConfig = field(default_factory=lambda: DriftConfig(detector="off"))
    policy: AlertPolicy = field(default_factory=AlertPolicy)


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert document on the operator's output, told apart from window documents."""

    doc: Doc


Emitted = Document | DeadLetter | Alert


class ModelState(TypedDict):
    """One model's checkpoint: its window and the ``seq`` of its last document."""

    v: Literal[1]
    model: str
    window: WindowSnapshot
    emitted_seq: int
    drift: NotRequired[dict[str, Any]]  # DriftWatch.snapshot(); absent in older checkpoints
    alerts: NotRequired[dict[str, Any]]  # AlertBook.snapshot()
    join: NotRequired[LatencySnapshot]  # with delayed labels: join counts and latencies


def over_class_limit(known: LabelTable, cols: ModelColumns, limit: int) -> list[int]:
    """Rows whose labels would take the model past ``limit`` classes (truth and predictions).

    Rows are judged in read order, as if they came one by one: a row is admitted when all its
    new labels still fit, so the verdict does not depend on how the stream was batched. The
    common case (every label known, or room for all new ones) costs two bincounts.
    """
    n_labels = len(cols.labels)
    if len(known) + n_labels <= limit:  # room even if every label of the batch were new
        return []
    used = np.flatnonzero(
        np.bincount(cols.truth, minlength=n_labels) + np.bincount(cols.pred, minlength=n_labels)
    )
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


def over_score_class_limit(known: LabelTable | None, cols: ModelColumns, limit: int) -> list[int]:
    """Rows whose score-map labels (with their truth) would take the model's score statistics
    past ``limit`` classes, judged in read order like `over_class_limit`.

    Score statistics hold one code per class per record, so their classes are bounded too.
    """
    if cols.scores is None:
        return []
    index: Mapping[str, int] = {} if known is None else known.index
    room = limit - len(index)
    if len(cols.labels) + len(cols.score_keys) <= room:  # room for every label of the batch
        return []
    present = ~np.isnan(cols.scores)
    admitted: set[str] = set()
    refused: list[int] = []
    for row in range(len(cols)):
        need = {cols.labels[int(cols.truth[row])]}
        need |= {cols.score_keys[j] for j in np.flatnonzero(present[row]).tolist()}
        need = {label for label in need if label not in index and label not in admitted}
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
        truth = cols.labels[cols.truth[row]]
        pred: str | dict[str, float] = cols.labels[cols.pred[row]]
        if cols.scores is not None and not np.isnan(cols.scores[row]).all():
            pred = {
                key: score
                for key, score in zip(cols.score_keys, cols.scores[row].tolist(), strict=True)
                if score == score
            }
        reason = reached(
            "CONFUSION_MAX_CLASSES",
            f"model {cols.model!r} already holds its limit of {limit} classes "
            f"(CONFUSION_MAX_CLASSES) and this record brings a new one",
        )
        raw = orjson.dumps(
            {
                "id": cols.ids[row],
                "ts": int(cols.ts[row]),
                "label": truth,
                "predictions": {cols.model: pred},
            }
        )
        position = -1 if cols.positions is None else int(cols.positions[row])
        letters.append(DeadLetter(raw, reason, cols.origin, position, cols.model, cols.headers))
    return letters


def _rows(cols: ModelColumns, lo: int, hi: int) -> ModelColumns:
    """Records ``lo .. hi - 1`` of ``cols``: a batch is cut where a detector saw a change."""
    return cols.take(np.arange(lo, hi))


def _without(cols: ModelColumns, rows: list[int]) -> ModelColumns:
    keep = np.ones(len(cols), dtype=bool)
    keep[rows] = False
    return cols.take(np.flatnonzero(keep))


class ModelWindowLogic(StatefulBatchLogic[ModelColumns | JoinCounts, Emitted, ModelState]):
    """One model's window inside the dataflow (one instance per model key).

    With `Alerting`, the model's detectors see every record and its rules every document; the
    alerts come out in order with the documents, as `Alert` items, and the detector and alert
    state is part of the snapshot. With ``join`` (delayed labels) its documents also carry the
    model's join counts and the window's label latency (`JoinLedger`).
    """

    def __init__(
        self,
        policy: WindowPolicy[Any, Any],
        emit_every: int,
        resume: ModelState | None,
        clock: Callable[[], int] = now_ms,
        max_classes: int = MAX_CLASSES,
        alerting: Alerting | None = None,
        join: bool = False,
    ) -> None:
        # Bytewax does not pass the key to the builder: the name arrives with the first batch.
        self.model = "" if resume is None else resume["model"]
        self.emit_every = emit_every
        self.max_classes = max_classes
        self.clock = clock
        self.alerting = alerting or Alerting()
        self.drift = DriftWatch(self.alerting.drift, resume.get("drift") if resume else None)
        self.book = AlertBook(
            self.alerting.policy, self.model, resume.get("alerts") if resume else None
        )
        self.ledger = JoinLedger(resume.get("join") if resume else None) if join else None
        self.window: SlidingWindow
        if resume is None:
            self.window = policy.new()
            self.emitted_seq = 0
        else:
            if resume.get("v") != STATE_VERSION:
                raise SnapshotError(
                    f"state of model {self.model!r} has version "
                    f"{resume.get('v')!r}, this build reads {STATE_VERSION}"
                )
            self.window = policy.restore(resume["window"])
            self.emitted_seq = resume["emitted_seq"]

    def on_batch(self, values: list[ModelColumns | JoinCounts]) -> tuple[list[Emitted], bool]:
        """Documents at each emission point, alerts where they happen, and dead letters of
        records over the class limit."""
        out: list[Emitted] = []
        for batch in values:
            self.model = self.book.model = batch.model
            if isinstance(batch, JoinCounts):
                if self.ledger is not None:
                    self.ledger.totals(batch.shard, batch.seen, batch.expired)
                continue
            arrived = len(batch)
            refused = over_class_limit(self.window.codes, batch, self.max_classes)
            if refused:
                out += _class_letters(batch, refused, self.max_classes)
                batch = _without(batch, refused)
            if self.window.score_bins:
                scores = self.window.scores
                refused = over_score_class_limit(
                    None if scores is None else scores.classes, batch, self.max_classes
                )
                if refused:
                    out += _class_letters(batch, refused, self.max_classes)
                    batch = _without(batch, refused)
            if self.ledger is not None and len(batch) < arrived:  # refused: counted, not held
                self.ledger.arrived(arrived - len(batch), batch.latency is None)
            changes = self._changes(batch)
            if not changes:
                self._add(batch, out)
                continue
            # Cut the batch after each record where a detector saw a change, so the alert
            # carries the window as it was at that record.
            start = 0
            for change in changes:
                if change.index + 1 > start:
                    self._add(_rows(batch, start, change.index + 1), out)
                    start = change.index + 1
                self._changed(change, out)
            if start < len(batch):
                self._add(_rows(batch, start, len(batch)), out)
        return out, StatefulBatchLogic.RETAIN

    def _add(self, batch: ModelColumns, out: list[Emitted]) -> None:
        if self.ledger is not None:
            self.ledger.log(len(batch), batch.latency)
        for view in self.window.add(batch, self.emit_every):
            self._emit(self._document(view), out)
        if self.ledger is not None:
            self.ledger.keep(self.window.seq, self.window.held)

    def _document(self, view: WindowView) -> Document:
        doc = document(self.model, view, self.clock())
        if self.ledger is not None:
            doc["join"] = self.ledger.info(view.seq, view.count)
        return doc

    def _emit(self, doc: Document, out: list[Emitted]) -> None:
        self.emitted_seq = doc["seq"]
        out.append(doc)
        if self.alerting.policy.rules or self.book.open:
            out.extend(Alert(a) for a in self.book.on_document(doc, self._now))

    def _now(self) -> str:
        return iso_ms(self.clock())

    def _changes(self, batch: ModelColumns) -> list[Change]:
        if not self.alerting.drift.enabled or not len(batch):
            return []
        scores = batch.scores  # score maps, where the model sent them (NaN rows elsewhere)
        true_score = (
            true_class_scores(batch.labels, batch.truth, batch.score_keys, scores)
            if scores is not None
            else None
        )
        return self.drift.update(batch.truth == batch.pred, true_score)

    def _changed(self, change: Change, out: list[Emitted]) -> None:
        alerts = self.book.on_change(
            f"{self.alerting.drift.detector}:{change.stream}",
            change.stream,
            change.degraded,
            change.before,
            change.after,
            change.records,
            self.window.seq,
            window_info(self.window.view()),
            self._now(),
        )
        out.extend(Alert(a) for a in alerts)

    def on_eof(self) -> tuple[list[Emitted], bool]:
        out: list[Emitted] = []
        if self.window.seq > self.emitted_seq:
            self._emit(self._document(self.window.view()), out)
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> ModelState:
        state: ModelState = {
            "v": STATE_VERSION,
            "model": self.model,
            "window": self.window.snapshot(),
            "emitted_seq": self.emitted_seq,
            "drift": self.drift.snapshot(),
            "alerts": self.book.snapshot(),
        }
        if self.ledger is not None:
            state["join"] = self.ledger.snapshot()
        return state
