"""The join of prediction and label halves by id, with expiry on an event-time clock.

Pure: halves in, joined records (per model, as `ModelColumns`), counts and dead letters out.
Waiting predictions are held column by column (a row per record: its time and state, and per
model a predicted-label code and, for score maps, a row of float64 scores), plus one dict from
id to row; there is no Python object per waiting record beyond its id, which it arrived with.

Snapshots follow what changed in the epoch: a base and deltas in `flows.windows.join_log`
segments, the Bytewax state naming them (see that module for why and where they live).

The clock is event time: per origin (file, Kafka partition) the newest record time read from
it, and the clock is the oldest of those. It is part of the state, so the same input read in
the same order expires the same halves, with or without a crash in between. A half waiting
since time t expires once the clock passes ``t + ttl`` (at exactly ``t + ttl`` it still joins).
An origin that goes quiet holds the clock back: nothing expires until every origin has moved on.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import numpy as np
import orjson
from numpy.typing import NDArray

from flows.errors import SnapshotError
from flows.parsing.batches import DeadLetter, ModelColumns
from flows.parsing.halves import Halves, LabelHalves, PredictionHalves
from flows.parsing.labels import LabelTable
from flows.windows.join_log import InlineSegments, SegmentLog, shard_name, shard_number

FREE, WAITING, JOINED = 0, 1, 2
CHUNK = 4096  # rows per snapshot block of a version-1 snapshot (read on resume only)
JOIN_STATE_VERSION: Literal[2] = 2
REBASE_MIN_BYTES = 1 << 20  # a log under this size never forces a new base
NEVER = 1 << 62  # the oldest time of an empty set


@dataclass(frozen=True, slots=True)
class JoinCounts:
    """Predictions of a model that join shard ``shard`` has accepted so far, and those of them
    that expired unlabeled: running totals, not increments, so a window can take the newest it
    has from each shard whatever order they reach it in (with several shards, a record joined
    in one reading worker's batch and its prediction's count from another's travel apart)."""

    model: str
    seen: int = 0
    expired: int = 0
    shard: int = 0


@dataclass(slots=True)
class JoinResult:
    """What one step of the join hands on."""

    joined: dict[str, ModelColumns] = field(default_factory=dict)
    counts: dict[tuple[str, int], JoinCounts] = field(default_factory=dict)  # (model, shard)
    dead: list[DeadLetter] = field(default_factory=list)


def ttl_text(ttl_ms: int) -> str:
    """``7d``, ``12h``, ``30m``, ``45s`` or ``500ms``: the TTL as a user would write it."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ttl_ms % size == 0:
            return f"{ttl_ms // size}{unit}"
    return f"{ttl_ms}ms"


class _ModelSlots:
    """One model's columns of the waiting rows."""

    __slots__ = ("keys", "pred", "scores")

    def __init__(self, cap: int) -> None:
        self.pred = np.full(cap, -1, dtype=np.int32)
        self.keys: list[str] = []
        self.scores: NDArray[np.float64] | None = None

    def grow(self, cap: int) -> None:
        pred = np.full(cap, -1, dtype=np.int32)
        pred[: len(self.pred)] = self.pred
        self.pred = pred
        if self.scores is not None:
            scores = np.full((cap, self.scores.shape[1]), np.nan)
            scores[: len(self.scores)] = self.scores
            self.scores = scores

    def key_columns(self, keys: list[str], cap: int) -> list[int]:
        """Columns of ``keys`` in the score matrix, adding the missing ones."""
        for key in keys:
            if key not in self.keys:
                self.keys.append(key)
        if self.scores is None:
            self.scores = np.full((cap, len(self.keys)), np.nan)
        elif self.scores.shape[1] < len(self.keys):
            wider = np.full((len(self.scores), len(self.keys)), np.nan)
            wider[:, : self.scores.shape[1]] = self.scores
            self.scores = wider
        return [self.keys.index(k) for k in keys]


class JoinSnapshotV1(TypedDict):
    """The checkpoint of one join shard before the segment log (still read on resume).

    ``chunks`` are the rows in blocks of `CHUNK`, each one pickled blob of ``(ids, ts, state,
    {model: (pred, scores)})``. ``models`` gives each model's score-map keys (a block pickled
    earlier may have fewer columns, or no model entry).
    """

    v: Literal[1]
    labels: list[str]
    chunks: list[bytes]
    models: dict[str, list[str]]
    waiting_labels: list[tuple[str | int, str, int, int, str]]
    clock: dict[str, int]


class JoinSnapshot(TypedDict):
    """The checkpoint of one join shard: the manifest of its segments and the small parts.

    ``segments`` (base first, then deltas; ``sizes`` their lengths) hold the rows and the
    waiting labels; ``seq`` is the last segment number the shard wrote; ``inline`` carries the
    segments' bytes when they are not kept in files. ``models`` gives each model's score-map
    keys (a segment written earlier may have fewer columns, or no model entry).
    """

    v: Literal[2]
    shard: str
    seq: int
    segments: list[str]
    sizes: list[int]
    inline: dict[str, bytes] | None
    labels: list[str]
    models: dict[str, list[str]]
    clock: dict[str, int]
    totals: dict[str, tuple[int, int]]


_Label = tuple[str, int, int, str]  # label text, its time, its position, its origin
_Models = dict[str, tuple[NDArray[np.int32], NDArray[np.float64] | None]]


class JoinStore:
    """The waiting halves of one shard and the clock that expires them."""

    def __init__(self, ttl_ms: int, log: SegmentLog | None = None) -> None:
        self.ttl = ttl_ms
        self.log = log if log is not None else SegmentLog(InlineSegments())
        self.table = LabelTable()
        self.index: dict[str | int, int] = {}
        self.ids: list[str | int | None] = []
        self.ts = np.zeros(1024, dtype=np.int64)
        self.state = np.zeros(1024, dtype=np.int8)
        self.models: dict[str, _ModelSlots] = {}
        self.labels: dict[str | int, _Label] = {}
        self.clock: dict[str, int] = {}  # origin -> newest event time read from it
        self.live = 0  # rows WAITING or JOINED
        self.waiting = 0  # rows WAITING
        self.shard = 0  # the shard's number, which its counts carry
        self.totals: dict[str, list[int]] = {}  # model -> [seen, expired] so far
        # Lower bounds of the times of live rows and of waiting labels (None: not known), so a
        # batch's sweep scans the rows only when something may have expired.
        self._oldest_row: int | None = None
        self._oldest_label: int | None = None
        # What changed since the last snapshot: rows from `_mark` on are new (written whole);
        # the state of older rows in `_changed`; waiting labels in `_label_ops`. After a
        # compaction renumbers the rows, the next snapshot is a new base.
        self._mark = 0
        self._changed: list[int] = []
        self._changed_arrays: list[NDArray[np.int64]] = []
        self._label_ops: list[tuple[str | int, _Label | None]] = []  # in order: dict order counts
        self._rebase = True

    def move_to(self, log: SegmentLog) -> None:
        """Keep the segments in ``log`` from now on (the next snapshot is a base there)."""
        self.log = log
        self._rebase = True

    def _touch(self, row: int) -> None:
        """Row ``row`` changed state: the next delta carries it."""
        if row < self._mark:
            self._changed.append(row)

    def _touch_rows(self, rows: NDArray[np.int64]) -> None:
        self._changed_arrays.append(rows[rows < self._mark])

    @property
    def now(self) -> int | None:
        """The clock: the oldest of the origins' newest times (None before any half)."""
        return min(self.clock.values()) if self.clock else None

    def _cap(self) -> int:
        return len(self.ts)

    def _reserve(self, n: int) -> int:
        """Room for ``n`` more rows; returns the first new row."""
        base = len(self.ids)
        if base + n > self._cap() and self.live * 2 < base:
            self._compact()
            base = len(self.ids)
        if base + n > self._cap():
            cap = max(2 * self._cap(), base + n)
            for name in ("ts", "state"):
                old = getattr(self, name)
                new = np.zeros(cap, dtype=old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
            for slots in self.models.values():
                slots.grow(cap)
        return base

    def _compact(self) -> None:
        self._rebase = True
        keep = np.flatnonzero(self.state[: len(self.ids)] != FREE)
        cap = self._cap()
        n = len(keep)
        self.ids = [self.ids[i] for i in keep.tolist()]
        for name in ("ts", "state"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[:n] = old[keep]
            setattr(self, name, new)
        for slots in self.models.values():
            pred = np.full(cap, -1, dtype=np.int32)
            pred[:n] = slots.pred[keep]
            slots.pred = pred
            if slots.scores is not None:
                scores = np.full((cap, slots.scores.shape[1]), np.nan)
                scores[:n] = slots.scores[keep]
                slots.scores = scores
        self.index = {rid: r for r, rid in enumerate(self.ids) if rid is not None}

    def _append(self, halves: PredictionHalves) -> int:
        """Write prediction halves as new rows (state FREE until the join admits them)."""
        n = len(halves)
        base = self._reserve(n)
        self.ids.extend(halves.ids)
        self.ts[base : base + n] = halves.ts
        if self._oldest_row is not None and n:
            self._oldest_row = min(self._oldest_row, int(halves.ts.min()))
        remap = self.table.encode(halves.labels)
        for model, entry in halves.models.items():
            slots = self.models.get(model)
            if slots is None:
                slots = self.models[model] = _ModelSlots(self._cap())
            pred = entry.pred
            slots.pred[base : base + n] = np.where(pred >= 0, remap[np.maximum(pred, 0)], -1)
            if entry.scores is not None:
                cols = slots.key_columns(entry.score_keys, self._cap())
                assert slots.scores is not None
                block = np.full((n, slots.scores.shape[1]), np.nan)
                block[:, cols] = entry.scores
                slots.scores[base : base + n] = block
        return base

    def _free(self, row: int) -> None:
        self._touch(row)
        if self.state[row] == WAITING:
            self.waiting -= 1
        self.state[row] = FREE
        self.live -= 1
        rid = self.ids[row]
        if rid is not None and self.index.get(rid) == row:
            del self.index[rid]
        self.ids[row] = None

    def _expire(self, rows: list[int], out: JoinResult) -> None:
        """Free ``rows``; those still waiting count as expired for their models."""
        waiting = np.asarray([r for r in rows if self.state[r] == WAITING], dtype=np.int64)
        if len(waiting):
            for model, slots in self.models.items():
                n = int((slots.pred[waiting] >= 0).sum())
                if n:
                    self._count(out, model, expired=n)
        for r in rows:
            self._free(r)

    def step(self, halves: Halves) -> JoinResult:
        """Join one batch's halves (read order kept), then expire what the clock passed."""
        out = JoinResult()
        origin = halves.origin
        prev = self.clock.get(origin)
        others = [t for o, t in self.clock.items() if o != origin]
        floor = min(others) if others else None

        def clock_at(run: NDArray[np.int64]) -> list[int]:
            c = run if prev is None else np.maximum(run, prev)
            clocks: list[int] = (c if floor is None else np.minimum(c, floor)).tolist()
            return clocks

        preds, labels = halves.predictions, halves.labels
        p_clock, l_clock = clock_at(preds.run_max), clock_at(labels.run_max)
        base = self._append(preds) if len(preds) else len(self.ids)
        n_pred = len(preds)
        admitted: list[int] = []
        # (row, label, label ts, source position of the half that completed it), in join order
        matched: list[tuple[int, str, int, int]] = []
        ttl, index, state, ts, waiting = self.ttl, self.index, self.state, self.ts, self.labels
        # The common batches take a vectorized path; what it does not settle goes one by one.
        order: list[int]
        if not len(labels) and self._admit_all(preds, base):
            order = []
            admitted = list(range(base, base + n_pred))
        elif not n_pred:
            order = self._labels_at_once(labels, l_clock, matched)
        else:
            rows = np.concatenate([preds.rows, labels.rows])
            order = np.argsort(rows, kind="stable").tolist()
        for k in order:
            if k < n_pred:
                rid, now, row = preds.ids[k], p_clock[k], base + k
                old = index.get(rid)
                if old is not None and ts[old] + ttl < now:
                    self._expire([old], out)
                    old = None
                if old is not None:
                    self.ids[row] = None
                    out.dead.append(self._second_prediction(preds, k, halves, state[old]))
                    continue
                label = waiting.get(rid)
                if label is not None and label[1] + ttl < now:
                    out.dead.append(self._orphan(rid, label, halves.headers))
                    del waiting[rid]
                    self._label_ops.append((rid, None))
                    label = None
                index[rid] = row
                self.live += 1
                admitted.append(row)
                if label is None:
                    state[row] = WAITING
                    self.waiting += 1
                else:
                    del waiting[rid]
                    self._label_ops.append((rid, None))
                    state[row] = JOINED
                    matched.append((row, label[0], label[1], int(preds.positions[k])))
            else:
                j = k - n_pred
                rid, now = labels.ids[j], l_clock[j]
                text, when = labels.labels[j], int(labels.ts[j])
                old = index.get(rid)
                if old is not None and ts[old] + ttl < now:
                    self._expire([old], out)
                    old = None
                if old is not None:
                    if state[old] == WAITING:
                        self._touch(old)
                        state[old] = JOINED
                        self.waiting -= 1
                        matched.append((old, text, when, int(labels.positions[j])))
                    else:
                        out.dead.append(
                            self._label_letter(
                                rid,
                                text,
                                when,
                                f"second label for id {rid!r}: its prediction is already "
                                "joined with a label",
                                int(labels.positions[j]),
                                halves,
                            )
                        )
                    continue
                first = waiting.get(rid)
                if first is not None and first[1] + ttl < now:
                    out.dead.append(self._orphan(rid, first, halves.headers))
                    first = None
                if first is not None:
                    reason = (
                        f"second label for id {rid!r}: a first label for it is waiting "
                        "for its prediction"
                    )
                    out.dead.append(
                        self._label_letter(
                            rid, text, when, reason, int(labels.positions[j]), halves
                        )
                    )
                    continue
                entry = waiting[rid] = (text, when, int(labels.positions[j]), origin)
                if self._oldest_label is not None and when < self._oldest_label:
                    self._oldest_label = when
                self._label_ops.append((rid, entry))
        if admitted:
            arr = np.asarray(admitted, dtype=np.int64)
            for model, slots in self.models.items():
                n = int((slots.pred[arr] >= 0).sum())
                if n:
                    self._count(out, model, seen=n)
        if matched:
            self._joined(matched, halves, out)
        if halves.batch_max is not None:
            self.clock[origin] = max(
                halves.batch_max, prev if prev is not None else halves.batch_max
            )
        self.sweep(out, halves.headers)
        return out

    def _admit_all(self, preds: PredictionHalves, base: int) -> bool:
        """Admit every prediction of a batch as waiting, when none meets an id already held."""
        ids = preds.ids
        n = len(ids)
        if len(set(ids)) != n or not self.index.keys().isdisjoint(ids):
            return False
        if self.labels and not self.labels.keys().isdisjoint(ids):
            return False
        self.index.update(zip(ids, range(base, base + n), strict=True))
        self.state[base : base + n] = WAITING
        self.live += n
        self.waiting += n
        return True

    def _labels_at_once(
        self,
        labels: LabelHalves,
        clocks: list[int],
        matched: list[tuple[int, str, int, int]],
    ) -> list[int]:
        """Join the labels of a batch whose prediction waits (unexpired), all at once; return
        the positions of the others (in order), which join nothing and go one by one."""
        ids = labels.ids
        n = len(ids)
        if len(set(ids)) != n:
            return list(range(n))
        get = self.index.get
        rows = np.asarray([get(rid, -1) for rid in ids], dtype=np.int64)
        found = rows >= 0
        at = rows[found]
        ok = np.zeros(n, dtype=bool)
        ok[found] = (self.state[at] == WAITING) & (
            self.ts[at] + self.ttl >= np.asarray(clocks, dtype=np.int64)[found]
        )
        hit = np.flatnonzero(ok)
        if len(hit):
            joined = rows[hit]
            self._touch_rows(joined)
            self.state[joined] = JOINED
            self.waiting -= len(hit)
            text = labels.labels
            matched.extend(
                zip(
                    joined.tolist(),
                    [text[i] for i in hit.tolist()],
                    labels.ts[hit].tolist(),
                    labels.positions[hit].tolist(),
                    strict=True,
                )
            )
        # Positions k >= number of predictions (none here) are labels in the one-by-one loop.
        return np.flatnonzero(~ok).tolist()

    def sweep(self, out: JoinResult, headers: Mapping[str, str]) -> None:
        """Expire every half whose time plus the TTL the clock has passed."""
        now = self.now
        if now is None:
            return
        n = len(self.ids)
        horizon = now - self.ttl  # halves older than this expire
        if self.live and (self._oldest_row is None or self._oldest_row < horizon):
            live = self.state[:n] != FREE
            old = np.flatnonzero(live & (self.ts[:n] < horizon))
            if len(old):
                self._expire(old.tolist(), out)
                live[old] = False
            self._oldest_row = int(self.ts[:n][live].min()) if live.any() else NEVER
        if self.labels and (self._oldest_label is None or self._oldest_label < horizon):
            gone = [rid for rid, lab in self.labels.items() if lab[1] < horizon]
            for rid in gone:
                out.dead.append(self._orphan(rid, self.labels.pop(rid), headers))
            self._label_ops.extend((rid, None) for rid in gone)
            self._oldest_label = min((lab[1] for lab in self.labels.values()), default=NEVER)

    def _joined(
        self, matched: list[tuple[int, str, int, int]], halves: Halves, out: JoinResult
    ) -> None:
        """Joined records per model; their ``positions`` are those of the halves that
        completed them (so a later refusal names a record of this batch, and shards' parts of
        one batch merge back into read order)."""
        rows = np.asarray([m[0] for m in matched], dtype=np.int64)
        positions = np.asarray([m[3] for m in matched], dtype=np.int64)
        truth_all = self.table.encode([m[1] for m in matched])
        label_ts = np.asarray([m[2] for m in matched], dtype=np.int64)
        ts = self.ts[rows]
        ids: list[str | int] = [self.ids[r] for r in rows.tolist()]
        labels = list(self.table.labels)
        for model, slots in self.models.items():
            pred = slots.pred[rows]
            sel = np.flatnonzero(pred >= 0)
            if not len(sel):
                continue
            scores = None
            keys: list[str] = []
            if slots.scores is not None:
                block = slots.scores[rows[sel]]
                present = np.asarray(~np.isnan(block).all(axis=0), dtype=np.bool_)
                if present.any():
                    keys = [k for k, p in zip(slots.keys, present.tolist(), strict=True) if p]
                    scores = block[:, present]
            out.joined[model] = ModelColumns(
                model,
                labels,
                truth_all[sel],
                pred[sel],
                [ids[i] for i in sel.tolist()],
                ts[sel],
                halves.origin,
                positions[sel],
                halves.headers,
                keys,
                scores,
                label_ts[sel] - ts[sel],
            )

    def _second_prediction(
        self, preds: PredictionHalves, k: int, halves: Halves, old_state: int
    ) -> DeadLetter:
        rid = preds.ids[k]
        entries: dict[str, Any] = {}
        for model, entry in preds.models.items():
            code = int(entry.pred[k])
            if code < 0:
                continue
            if entry.scores is not None and not np.isnan(entry.scores[k]).all():
                entries[model] = {
                    key: s
                    for key, s in zip(entry.score_keys, entry.scores[k].tolist(), strict=True)
                    if s == s
                }
            else:
                entries[model] = preds.labels[code]
        raw = orjson.dumps({"id": rid, "ts": int(preds.ts[k]), "predictions": entries})
        if old_state == WAITING:
            reason = f"second prediction for id {rid!r}: the first is waiting for its label"
        else:
            reason = (
                f"second prediction for id {rid!r}: a prediction with this id is already joined"
            )
        return DeadLetter(raw, reason, halves.origin, int(preds.positions[k]), None, halves.headers)

    def _label_letter(
        self,
        rid: str | int,
        label: str,
        when: int,
        reason: str,
        position: int,
        halves: Halves | None,
        origin: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> DeadLetter:
        raw = orjson.dumps({"id": rid, "ts": when, "label": label})
        if halves is not None:
            origin, headers = halves.origin, halves.headers
        return DeadLetter(raw, reason, origin, position, None, headers or {})

    def _orphan(
        self, rid: str | int, label: tuple[str, int, int, str], headers: Mapping[str, str]
    ) -> DeadLetter:
        reason = (
            f"label for id {rid!r} has no prediction: none arrived within "
            f"CONFUSION_LABEL_TTL={ttl_text(self.ttl)}"
        )
        return self._label_letter(rid, label[0], label[1], reason, label[2], None, label[3])

    def _count(self, out: JoinResult, model: str, seen: int = 0, expired: int = 0) -> None:
        totals = self.totals.setdefault(model, [0, 0])
        totals[0] += seen
        totals[1] += expired
        out.counts[(model, self.shard)] = JoinCounts(model, totals[0], totals[1], self.shard)

    def all_counts(self) -> list[JoinCounts]:
        """The running totals of every model this shard has seen."""
        return [JoinCounts(m, t[0], t[1], self.shard) for m, t in self.totals.items()]

    def waiting_by_model(self) -> dict[str, int]:
        """Predictions waiting for their label, per model."""
        n = len(self.ids)
        rows = self.state[:n] == WAITING
        return {m: int((rows & (s.pred[:n] >= 0)).sum()) for m, s in self.models.items()}

    def _models_of(self, lo: int, hi: int) -> _Models:
        return {
            m: (s.pred[lo:hi].copy(), None if s.scores is None else s.scores[lo:hi].copy())
            for m, s in self.models.items()
        }

    def _base(self) -> bytes:
        """Every row (freed ones too: row numbers stay those of the deltas after it) and every
        waiting label."""
        n = len(self.ids)
        parts = (
            "base",
            n,
            self.ids[:n],
            self.ts[:n].copy(),
            self.state[:n].copy(),
            self._models_of(0, n),
            list(self.labels.items()),
        )
        return pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)

    def _delta(self) -> bytes | None:
        """What changed since the last snapshot (None: nothing did)."""
        mark, n = self._mark, len(self.ids)
        arrays = [np.asarray(self._changed, dtype=np.int64), *self._changed_arrays]
        rows = np.unique(np.concatenate(arrays))
        if n == mark and not len(rows) and not self._label_ops:
            return None
        parts = (
            "delta",
            mark,
            n,
            rows,
            self.state[rows],
            self.ids[mark:n],
            self.ts[mark:n].copy(),
            self.state[mark:n].copy(),
            self._models_of(mark, n),
            self._label_ops,
        )
        return pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)

    def _write_changes(self, log: SegmentLog) -> None:
        """One segment with what changed: a delta, or a new base when the rows were renumbered
        or the log would outgrow the base (nothing when nothing changed)."""
        if self._rebase or not log.names:
            log.rebase(self._base())
            return
        delta = self._delta()
        if delta is None:
            return
        if log.log_bytes + len(delta) > max(log.base_bytes, REBASE_MIN_BYTES):
            log.rebase(self._base())
        else:
            log.append(delta)

    def snapshot(self) -> JoinSnapshot:
        """Write what changed since the last snapshot as one segment (a delta, or a new base
        when the rows were renumbered or the log outgrew the base) and return the manifest."""
        log = self.log
        if log.keeps:  # else the job runs without recovery: nothing resumes from it
            self._write_changes(log)
        log.collect()
        self._mark = len(self.ids)
        self._changed, self._changed_arrays = [], []
        self._label_ops = []
        self._rebase = False
        return {
            "v": JOIN_STATE_VERSION,
            "shard": shard_name(self.shard),
            "seq": log.seq,
            "segments": list(log.names),
            "sizes": list(log.sizes),
            "inline": log.store.inline(log.names),
            "labels": list(self.table.labels),
            "models": {m: list(s.keys) for m, s in self.models.items()},
            "clock": dict(self.clock),
            "totals": {m: (t[0], t[1]) for m, t in self.totals.items()},
        }

    @classmethod
    def restore(
        cls, ttl_ms: int, snap: JoinSnapshot | JoinSnapshotV1, log: SegmentLog | None = None
    ) -> JoinStore:
        """The store a snapshot describes; ``log`` is where its segments are (inline when None)."""
        version = snap.get("v")
        if version == 1:
            return cls._restore_v1(ttl_ms, snap, log)  # type: ignore[arg-type]
        if version != JOIN_STATE_VERSION:
            raise SnapshotError(
                f"join state has version {version!r}, this build reads 1 and {JOIN_STATE_VERSION}"
            )
        manifest: JoinSnapshot = snap  # type: ignore[assignment]
        if not manifest["segments"]:  # a kept log always starts with a base
            raise SnapshotError(
                "this join checkpoint was taken by a job running without recovery (no -r): it "
                "holds no rows to resume from"
            )
        if log is None:
            log = SegmentLog(InlineSegments(manifest["inline"]))
        log.adopt(manifest["seq"], manifest["segments"], manifest["sizes"])
        store = cls(ttl_ms, log)
        store.shard = shard_number(manifest["shard"])
        store.table = LabelTable(manifest["labels"])
        parts = list(_unpickled(log.read_all()))
        n = parts[-1][2] if parts[-1][0] == "delta" else parts[0][1]
        store._reserve(n)
        for model, keys in manifest["models"].items():
            slots = store.models[model] = _ModelSlots(store._cap())
            if keys:
                slots.key_columns(keys, store._cap())
        ids: list[str | int | None] = []
        for part in parts:
            if part[0] == "base":
                _, count, base_ids, ts, state, models, labels = part
                ids = list(base_ids)
                store._rows(0, count, ts, state, models)
                store.labels = dict(labels)
                continue
            _, mark, count, rows, states, new_ids, ts, state, models, changed = part
            if mark != len(ids):
                raise SnapshotError(
                    f"join segments do not follow each other: a delta starts at row {mark}, "
                    f"the rows before it end at {len(ids)}"
                )
            store.state[rows] = states
            for r in rows[states == FREE].tolist():
                ids[r] = None
            ids.extend(new_ids)
            store._rows(mark, count, ts, state, models)
            for rid, label in changed:
                if label is None:
                    del store.labels[rid]
                else:
                    store.labels[rid] = label
        store.ids = ids
        store._resumed(snap["clock"])
        store.totals = {m: [seen, expired] for m, (seen, expired) in manifest["totals"].items()}
        return store

    def _rows(
        self,
        lo: int,
        hi: int,
        ts: NDArray[np.int64],
        state: NDArray[np.int8],
        models: _Models,
    ) -> None:
        self.ts[lo:hi] = ts
        self.state[lo:hi] = state
        for model, (pred, scores) in models.items():
            slots = self.models[model]
            slots.pred[lo:hi] = pred
            if scores is not None and slots.scores is not None:
                slots.scores[lo:hi, : scores.shape[1]] = scores

    def _resumed(self, clock: dict[str, int]) -> None:
        """Counters, index and change marks of rows just restored."""
        n = len(self.ids)
        live = self.state[:n] != FREE
        self.index = {rid: r for r, rid in enumerate(self.ids) if rid is not None and live[r]}
        self.live = int(live.sum())
        self.waiting = int((self.state[:n] == WAITING).sum())
        self.clock = dict(clock)
        self._mark = n
        self._rebase = False

    @classmethod
    def _restore_v1(cls, ttl_ms: int, snap: JoinSnapshotV1, log: SegmentLog | None) -> JoinStore:
        """A snapshot of the block layout (before the segment log); its next snapshot is a base."""
        if log is not None:
            log.clear()
        store = cls(ttl_ms, log)
        store.table = LabelTable(snap["labels"])
        blocks = [pickle.loads(blob) for blob in snap["chunks"]]
        n = sum(len(b[0]) for b in blocks)
        store._reserve(n)
        for model, keys in snap["models"].items():
            slots = store.models[model] = _ModelSlots(store._cap())
            if keys:
                slots.key_columns(keys, store._cap())
        lo = 0
        for ids, ts, state, models in blocks:
            hi = lo + len(ids)
            store.ids.extend(ids)
            store._rows(lo, hi, ts, state, models)
            lo = hi
        store.labels = {
            item[0]: (item[1], item[2], item[3], item[4]) for item in snap["waiting_labels"]
        }
        store._resumed(snap["clock"])
        store._rebase = True
        return store


def _unpickled(blobs: Iterable[bytes]) -> Iterator[Any]:
    """Each pickled part of each segment (a merged delta is several pickles back to back)."""
    for blob in blobs:
        stream = io.BytesIO(blob)
        while stream.tell() < len(blob):
            yield pickle.load(stream)
