"""Score statistics of a sliding window: ranking, calibration and Brier, added and removed exactly.

For models that send score maps, a window also keeps what ROC-AUC, average precision, the Brier
score and the top-label calibration error need, as sums that records are added to and removed
from with one and the same tally, so removal is the exact inverse of addition:

- per class, one-vs-rest histograms of positives and negatives over ``bins`` fixed score bins
  (a score s falls in bin ``min(floor(s * bins), bins - 1)``, clipped into the first or last bin
  outside [0, 1]); ranking by bin makes the state counts, not a sorted list;
- per reliability bin (the bin of the top score): records, correct ones, and the sum of their
  top-label confidences in fixed point (units of 2**-31: integers, so exact);
- the Brier sum, exact: each record's term ``sum_k (s_k - y_k)**2`` is a float64, i.e. an integer
  mantissa times a power of two. Mantissas are summed as integers per binary exponent (split in
  halves of 27 and 26 bits so every partial sum stays an exact integer), so the sum of the terms
  held is exact whatever the order of millions of adds and removes; it becomes a float only when
  a document is built, by one correctly rounded integer division.

Storage is a FIFO ring: records leave oldest first (count and time windows both evict in read
order), so the caller only says how many leave. Per record: one code per class (one byte up to
126 bins: ``positive * (bins + 1) + bin``, bin ``bins`` standing for a missing key), the Brier
term (8 bytes, carrying the record's two flags, see `pack_terms`) and the confidence (4): 15 bytes
with 3 classes. The reliability code is not stored: its top bin is the highest bin among the
class codes, and correct / out of range are the flags. Classes are the labels seen as truth or
as score-map keys; a label missing from a record's map scores 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import numpy as np
from numpy.typing import NDArray

from flows.errors import SnapshotError
from flows.parsing.batches import ModelColumns
from flows.parsing.labels import LabelTable

SCORE_SNAPSHOT_VERSION = 2  # 1: a reliability code per record, terms without flags
CONF_ONE = 1 << 31  # fixed-point unit of confidences: 1.0 is 2**31
MAX_BINS = 1000

# Brier accumulator: a float64 x = f * 2**e with 0.5 <= f < 1 (np.frexp) is
# (hi * 2**26 + lo) * 2**(bucket - BRIER_UNIT) with bucket = e + 1074 >= 0, hi < 2**27, lo < 2**26.
BRIER_UNIT = 1074 + 53
_EXP_BUCKETS = 1024 + 1074 + 1
_FLUSH_AFTER = 1 << 25  # records tallied before float partial sums move to int64 (< 2**53)
_CHUNK = 1 << 21  # rows per float bincount of confidences: sums of <= 2**31 stay below 2**53

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


def bin_of(scores: Floats, bins: int) -> Ints:
    """The bin of each score: ``min(floor(s * bins), bins - 1)``, clipped outside [0, 1]."""
    clipped = np.clip(scores, 0.0, 1.0)
    return np.minimum(np.floor(clipped * bins), bins - 1).astype(np.int64)


def code_dtype(values: int) -> np.dtype[Any]:
    """The smallest unsigned dtype holding codes ``0 .. values - 1``."""
    if values <= 1 << 8:
        return np.dtype(np.uint8)
    if values <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def mantissa_parts(values: Floats) -> tuple[Ints, Floats, Floats]:
    """Each finite value's exponent bucket and the high and low parts of its mantissa, both
    integers held in float64: the top 27 bits of 53 and the rest (see `ExactSum`)."""
    fraction, exponent = np.frexp(values)
    high = np.floor(fraction * 134217728.0)  # 2**27
    low = fraction * 9007199254740992.0 - high * 67108864.0  # 2**53, 2**26
    return exponent + 1074, high, low


def bucket_total(buckets: Iterable[int], high: Iterable[int], low: Iterable[int]) -> int:
    """The exact sum, in units of 2**-1127, of integer mantissa sums per exponent bucket."""
    total = 0
    for bucket, h, lo in zip(buckets, high, low, strict=True):
        total += ((h << 26) + lo) << bucket
    return total


class ExactSum:
    """An exact sum of float64 values: integer mantissa sums per binary exponent.

    ``add`` with ``sign`` -1 removes exactly what ``add`` with +1 added; ``value`` is the sum in
    units of 2**-1127 (a Python int), from which any ratio is one correctly rounded division.
    Partial sums are kept in float64 arrays, exact while they hold integers below 2**53, and
    moved to int64 every `_FLUSH_AFTER` values.
    """

    __slots__ = ("_fhigh", "_flow", "_pending", "high", "low")

    def __init__(self) -> None:
        self.high: Ints = np.zeros(_EXP_BUCKETS, dtype=np.int64)
        self.low: Ints = np.zeros(_EXP_BUCKETS, dtype=np.int64)
        self._fhigh: Floats = np.zeros(_EXP_BUCKETS, dtype=np.float64)
        self._flow: Floats = np.zeros(_EXP_BUCKETS, dtype=np.float64)
        self._pending = 0

    def add(self, values: Floats, sign: int = 1) -> None:
        """Add (``sign`` 1) or remove (``sign`` -1) finite ``values``."""
        if len(values) + self._pending > _FLUSH_AFTER:
            self._flush()
            if len(values) > _FLUSH_AFTER:
                for start in range(0, len(values), _FLUSH_AFTER):
                    self.add(values[start : start + _FLUSH_AFTER], sign)
                return
        bucket, high, low = mantissa_parts(values)
        if sign > 0:
            self._fhigh += np.bincount(bucket, high, _EXP_BUCKETS)
            self._flow += np.bincount(bucket, low, _EXP_BUCKETS)
        else:
            self._fhigh -= np.bincount(bucket, high, _EXP_BUCKETS)
            self._flow -= np.bincount(bucket, low, _EXP_BUCKETS)
        self._pending += len(values)

    def add_buckets(self, first: int, high: Ints, low: Ints) -> None:
        """Add integer mantissa sums of buckets ``first ..`` (as `_StepSums` holds them)."""
        self.high[first : first + len(high)] += high
        self.low[first : first + len(low)] += low

    def _flush(self) -> None:
        self.high += self._fhigh.astype(np.int64)
        self.low += self._flow.astype(np.int64)
        self._fhigh[:] = 0.0
        self._flow[:] = 0.0
        self._pending = 0

    @property
    def value(self) -> int:
        """The sum in units of 2**-1127."""
        high = self.high + self._fhigh.astype(np.int64)
        low = self.low + self._flow.astype(np.int64)
        used = np.flatnonzero(high | low)
        return bucket_total(used.tolist(), high[used].tolist(), low[used].tolist())


@dataclass(frozen=True, slots=True)
class ScoreRows:
    """A batch turned into what the ring holds, row-aligned with the batch.

    Attributes:
        codes: per record and class, ``positive * (bins + 1) + bin`` (bin ``bins``: the key is
            missing, score 0); ``2 * (bins + 1)`` for a record without scores.
        rel: ``(out_of_range * 2 + correct) * bins + top bin``; ``4 * bins`` without scores.
        terms: each record's Brier term (0 when unscored or out of range).
        conf: top-label confidence in units of 2**-31 (clipped into [0, 1]).
    """

    codes: NDArray[Any]
    rel: NDArray[Any]
    terms: Floats
    conf: NDArray[Any]

    def __len__(self) -> int:
        return len(self.rel)

    def select(self, index: NDArray[Any]) -> ScoreRows:
        """The rows at ``index``."""
        return ScoreRows(self.codes[index], self.rel[index], self.terms[index], self.conf[index])


@dataclass(frozen=True, slots=True)
class ScoreView:
    """What a document needs of the score statistics at one moment (arrays are copies).

    ``positives`` and ``negatives`` are (classes, bins) histograms with missing keys folded into
    bin 0; ``present`` says which classes occur in the window as truth or as a score-map key.
    """

    bins: int
    classes: list[str]
    scored: int
    out_of_range: int
    positives: Ints
    negatives: Ints
    truth_counts: Ints
    present: NDArray[np.bool_]
    rel_count: Ints
    rel_correct: Ints
    rel_conf: Ints
    brier_sum: int  # units of 2**-BRIER_UNIT (`ExactSum.value`)
    stack: ViewStack | None = None  # the views of one batch, when made together (row ``row``)
    row: int = 0


@dataclass(slots=True)
class ViewStack:
    """The sums of the views one batch made, stacked: histograms (views, classes, bins), etc.

    A document of one of them computes ranking metrics and reliability divisions for all of
    them in one vectorized pass (kept in ``cache``): per view, work on 100 bins is mostly
    numpy's per-call cost.
    """

    positives: Ints
    negatives: Ints
    rel_count: Ints  # (views, bins), as `ScoreView` has them
    rel_correct: Ints
    rel_conf: Ints
    cache: dict[str, Any]


class ScoreSnapshot(TypedDict):
    """The picklable, versioned copy of a `ScoreWindow`, oldest record first."""

    v: int
    bins: int
    classes: list[str]
    prefix: int
    codes: NDArray[Any]
    rel: NotRequired[NDArray[Any]]  # version 1 only
    terms: Floats  # version 2: packed (`pack_terms`)
    conf: NDArray[Any]


class ScoreWindow:
    """Score statistics of the records a window holds, oldest first.

    ``prefix`` counts records the window held before this state existed (they have no scores);
    `evict` lets those go first.
    """

    __slots__ = (
        "_brier",
        "_codes",
        "_conf",
        "_conf_sum",
        "_head",
        "_hist",
        "_offsets",
        "_rel_count",
        "_terms",
        "bins",
        "classes",
        "held",
        "prefix",
    )

    def __init__(self, bins: int, capacity: int = 64, prefix: int = 0) -> None:
        if not 1 <= bins <= MAX_BINS:
            raise ValueError(f"score bins must be 1 to {MAX_BINS}")
        self.bins = bins
        self.classes = LabelTable()
        self.prefix = prefix
        self.held = 0  # records in the ring, scored or not
        self._head = 0
        capacity = max(capacity, 1)
        self._codes: NDArray[Any] = np.zeros((capacity, 0), dtype=code_dtype(self._slot + 1))
        self._terms: Floats = np.zeros(capacity, dtype=np.float64)  # packed: `pack_terms`
        self._conf: NDArray[np.uint32] = np.zeros(capacity, dtype=np.uint32)
        self._hist: Ints = np.zeros(0, dtype=np.int64)  # class c at c * (slot + 1) + code
        self._offsets: Ints = np.zeros(0, dtype=np.int64)
        self._rel_count: Ints = np.zeros(4 * bins + 1, dtype=np.int64)
        self._conf_sum: Ints = np.zeros(4 * bins + 1, dtype=np.int64)
        self._brier = ExactSum()

    @property
    def _slot(self) -> int:
        """The code of a record without scores; codes below it are per-class histogram slots."""
        return 2 * (self.bins + 1)

    @property
    def _rel_dtype(self) -> np.dtype[Any]:
        """The dtype of reliability codes ``0 .. 4 * bins`` in prepared rows."""
        return code_dtype(4 * self.bins + 1)

    @property
    def scored(self) -> int:
        """Records with scores held."""
        return int(self._rel_count[: 4 * self.bins].sum())

    @property
    def count(self) -> int:
        """Records of the window this state accounts for (held here or in the prefix)."""
        return self.prefix + self.held

    # -- batch preparation ---------------------------------------------------------------------

    def _grow_classes(self, n: int) -> None:
        old = self._codes.shape[1]
        if n <= old:
            return
        width, missing = self._slot + 1, self.bins  # a held record lacks the new keys
        unscored = np.isnan(self._terms)
        pad = np.where(unscored, self._slot, missing)[:, None]
        self._codes = np.hstack([self._codes, np.repeat(pad, n - old, axis=1)]).astype(
            self._codes.dtype
        )
        hist = np.zeros(n * width, dtype=np.int64)
        hist[: old * width] = self._hist
        scored = self.scored
        for c in range(old, n):
            hist[c * width + missing] = scored
        self._hist = hist
        self._offsets = np.arange(n, dtype=np.int64) * width

    def prepare(
        self,
        labels: Sequence[str],
        truth: NDArray[Any],
        pred: NDArray[Any],
        keys: Sequence[str],
        scores: Floats,
    ) -> ScoreRows:
        """Turn a batch's columns into rows ready to `push`.

        Args:
            labels: the batch's label table; ``truth`` and ``pred`` are codes into it.
            truth: true label code per record.
            pred: predicted label code per record (the arg-max of its score map).
            keys: the score-map labels, one per column of ``scores``.
            scores: (records, keys) scores; NaN where a record's map lacks the key, a row of
                NaN where the record sent a bare label (it is held but not scored).
        """
        n, bins = len(truth), self.bins
        truth = np.asarray(truth, dtype=np.int64)
        used = np.flatnonzero(np.bincount(truth, minlength=len(labels)))
        remap = np.full(len(labels), -1, dtype=np.int64)
        remap[used] = [self.classes.code(labels[i]) for i in used.tolist()]
        key_class = np.asarray([self.classes.code(k) for k in keys], dtype=np.int64)
        pred = np.asarray(pred, dtype=np.int64)
        low = min(int(pred.min()), 0) if n else 0  # codes below 0: no prediction
        for code in (np.flatnonzero(np.bincount(pred - low)) + low).tolist():
            # a scored record predicts one of its keys
            if code >= 0 and remap[code] < 0 and labels[code] in self.classes.index:
                remap[code] = self.classes.index[labels[code]]
        self._grow_classes(len(self.classes))
        tclass = remap[truth]
        pclass = remap[pred]

        if len(keys) == len(self.classes) and n and _plain(scores):
            return self._plain_rows(tclass, pclass, key_class, keys, scores)
        missing = np.isnan(scores)
        scored = ~missing.all(axis=1) if len(keys) else np.zeros(n, dtype=bool)
        filled = np.where(missing, 0.0, scores)
        outside = ((filled < 0.0) | (filled > 1.0)).any(axis=1)
        positive = np.arange(len(self.classes))[None, :] == tclass[:, None]
        codes = np.full((n, len(self.classes)), bins, dtype=np.int64)
        codes[:, key_class] = np.where(missing, bins, bin_of(filled, bins))
        top = codes.max(axis=1, where=codes < bins, initial=0)
        codes += positive * (bins + 1)
        codes[~scored] = self._slot
        # A record's term depends on the record alone: its keys in label order, then 1 when
        # its map lacks the true label (other columns of the batch add exact zeros).
        order = sorted(range(len(keys)), key=keys.__getitem__)
        hot = positive[:, key_class[order]] & ~missing[:, order]
        squares = (filled[:, order] - hot) ** 2
        terms = np.zeros(n)
        for j in range(len(order)):  # left to right: numpy's sum may regroup wide rows
            terms += squares[:, j]
        terms += ~hot.any(axis=1)
        terms[~scored | outside] = 0.0
        conf = np.rint(
            np.clip(filled.max(axis=1, where=~missing, initial=0.0), 0.0, 1.0) * CONF_ONE
        )
        conf[~scored] = 0.0
        rel = np.where(scored, (outside * 2 + (pclass == tclass)) * bins + top, 4 * bins)
        return ScoreRows(
            codes.astype(self._codes.dtype),
            rel.astype(self._rel_dtype),
            terms,
            conf.astype(np.uint32),
        )

    def _plain_rows(
        self, tclass: Ints, pclass: Ints, key_class: Ints, keys: Sequence[str], scores: Floats
    ) -> ScoreRows:
        """`prepare` for the common batch: every record maps every class to a score in [0, 1].

        The same values as the general path, without its steps for missing keys, bare labels
        and scores out of range (each a few numpy calls on the whole batch).
        """
        bins = self.bins
        binned = bin_of(scores, bins)
        codes = np.empty((len(scores), len(self.classes)), dtype=np.int64)
        codes[:, key_class] = binned
        codes += (np.arange(len(self.classes))[None, :] == tclass[:, None]) * (bins + 1)
        # Column by column: numpy's reductions along a short axis cost more than the columns.
        # Every class is a key, so each record's map holds its true label: no term of 1.
        terms = np.zeros(len(scores))
        for j in sorted(range(len(keys)), key=keys.__getitem__):  # keys in label order
            terms += (scores[:, j] - (tclass == key_class[j])) ** 2
        top, highest = binned[:, 0], scores[:, 0]
        for j in range(1, len(keys)):
            top, highest = np.maximum(top, binned[:, j]), np.maximum(highest, scores[:, j])
        conf = np.rint(np.clip(highest, 0.0, 1.0) * CONF_ONE)
        rel = (pclass == tclass) * bins + top
        return ScoreRows(
            codes.astype(self._codes.dtype),
            rel.astype(self._rel_dtype),
            terms,
            conf.astype(np.uint32),
        )

    # -- the one tally, for add and remove -----------------------------------------------------

    def _tally(
        self, codes: NDArray[Any], rel: NDArray[Any], terms: Floats, conf: NDArray[Any], sign: int
    ) -> None:
        hist = np.bincount((codes + self._offsets).ravel(), minlength=len(self._hist))
        rel_count = np.bincount(rel, minlength=len(self._rel_count))
        conf_sum = _int_bincount(rel, conf, len(self._conf_sum))
        if sign > 0:
            self._hist += hist[: len(self._hist)]
            self._rel_count += rel_count
            self._conf_sum += conf_sum
        else:
            self._hist -= hist[: len(self._hist)]
            self._rel_count -= rel_count
            self._conf_sum -= conf_sum
        self._brier.add(terms, sign)

    # -- the FIFO ring -------------------------------------------------------------------------

    def _slots(self, start: int, n: int) -> list[tuple[int, int]]:
        size = len(self._terms)
        lo = start % size
        if lo + n <= size:
            return [(lo, lo + n)]
        return [(lo, size), (0, lo + n - size)]

    def _grow_ring(self, need: int) -> None:
        size = len(self._terms)
        if need <= size:
            return
        new_size = max(need, 2 * size)
        order = (self._head + np.arange(self.held)) % size
        for name in ("_codes", "_terms", "_conf"):
            old = getattr(self, name)
            new = np.zeros((new_size, *old.shape[1:]), dtype=old.dtype)
            new[: self.held] = old[order]
            setattr(self, name, new)
        self._head = 0

    def push(self, rows: ScoreRows, lo: int = 0, hi: int | None = None) -> None:
        """Add rows ``lo .. hi - 1`` of a prepared batch as the newest records.

        A count window lets its oldest records go (`evict`) before pushing, so the ring never
        outgrows the window; a time window pushes first and the ring doubles when it must.
        """
        hi = len(rows) if hi is None else hi
        if hi <= lo:
            return
        part = self._widen(rows.select(np.arange(lo, hi)) if (lo, hi) != (0, len(rows)) else rows)
        self._write(part, 0)
        self._tally(part.codes, part.rel, part.terms, part.conf, 1)

    def advance(
        self, rows: ScoreRows, lo: int, hi: int, leaving: int, keep: NDArray[np.bool_] | None = None
    ) -> None:
        """Follow one step of the window: rows ``lo .. hi - 1`` arrive, ``leaving`` records go.

        ``keep`` (over the step's rows) leaves out records the window never held (a time
        window's late records); the oldest records go first, some of the step's own if the
        step itself overflows the window. One step of `advance_steps`.
        """
        self.advance_steps(rows, [(lo, hi, leaving, keep, False)])

    def advance_steps(self, rows: ScoreRows, steps: Sequence[Step]) -> list[ScoreView | None]:
        """Follow a batch's steps at once; return the view after each step marked due.

        The same as `advance` step by step with a `view` (None when nothing scored is held)
        after each due step, but every sum is tallied for all steps in one pass per group of
        steps and the views are cut from running sums: at emit 100 a step is 100 records, where
        numpy's per-call cost, not the records, would decide the time.
        """
        views: list[ScoreView | None] = []
        for start in range(0, len(steps), _GROUP):
            views += self._advance_group(rows, steps[start : start + _GROUP])
        return views

    def _advance_group(self, rows: ScoreRows, steps: Sequence[Step]) -> list[ScoreView | None]:
        new, arrived = _arrivals(rows, steps)
        new = self._widen(new)
        n_steps = len(steps)
        leaving = np.asarray([step[2] for step in steps], dtype=np.int64)
        total = min(int(leaving.sum()), self.count + len(new))
        from_prefix = min(total, self.prefix)
        from_ring = min(total - from_prefix, self.held)
        from_new = total - from_prefix - from_ring
        out_step = np.repeat(np.arange(n_steps), leaving)[from_prefix:total]
        in_step = np.repeat(np.arange(n_steps), arrived)
        ring = self._oldest(from_ring)
        # Every row that moves, once as it arrives and once as it leaves: slot s arrives at
        # step s, slot n_steps + s leaves at step s.
        moving = ScoreRows(
            np.concatenate([new.codes, ring.codes, new.codes[:from_new]]),
            np.concatenate([new.rel, ring.rel, new.rel[:from_new]]),
            np.concatenate([new.terms, ring.terms, new.terms[:from_new]]),
            np.concatenate([new.conf, ring.conf, new.conf[:from_new]]),
        )
        sums = _StepSums.of(self, n_steps, np.concatenate([in_step, out_step + n_steps]), moving)
        due = [i for i, step in enumerate(steps) if step[4]]
        views = self._views(sums, due) if due else []
        self._hist += sums.hist[-1]
        self._rel_count += sums.rel_count[-1]
        self._conf_sum += sums.conf_sum[-1]
        self._brier.add_buckets(sums.first_bucket, sums.high[-1], sums.low[-1])
        self.prefix -= from_prefix
        self._head = (self._head + from_ring) % len(self._terms)
        self.held -= from_ring
        self._write(new, from_new)
        return views

    def _widen(self, rows: ScoreRows) -> ScoreRows:
        """``rows`` with codes for classes that joined after they were prepared (missing)."""
        width = self._codes.shape[1]
        if rows.codes.shape[1] >= width:
            return rows
        pad = np.where(rows.rel == 4 * self.bins, self._slot, self.bins)[:, None]
        codes = np.hstack([rows.codes, np.repeat(pad, width - rows.codes.shape[1], axis=1)])
        return ScoreRows(codes.astype(self._codes.dtype), rows.rel, rows.terms, rows.conf)

    def _oldest(self, n: int) -> ScoreRows:
        """The ``n`` oldest held rows (copies), oldest first."""
        parts = [slice(a, b) for a, b in self._slots(self._head, n)] if n else [slice(0, 0)]
        codes, packed, conf = (
            np.concatenate([array[part] for part in parts])
            for array in (self._codes, self._terms, self._conf)
        )
        return self._unpack(codes, packed, conf)

    def _unpack(self, codes: NDArray[Any], packed: Floats, conf: NDArray[Any]) -> ScoreRows:
        """Held records as prepared rows: the reliability code rebuilt from codes and flags."""
        bins, width = self.bins, self.bins + 1
        top = np.zeros(len(codes), dtype=np.int64)
        for column in codes.T:  # the highest bin among the keys the record's map holds
            bin_ = column % width
            top = np.maximum(top, np.where(bin_ < bins, bin_, 0))
        terms, correct, outside, unscored = unpack_terms(packed)
        rel = np.where(unscored, 4 * bins, (outside * 2 + correct) * bins + top)
        return ScoreRows(codes, rel.astype(self._rel_dtype), terms, conf)

    def _write(self, rows: ScoreRows, lo: int) -> None:
        """Put rows ``lo ..`` into the ring as the newest records, without tallying them."""
        n = len(rows) - lo
        if n <= 0:
            return
        self._grow_ring(self.held + n)
        offset = lo
        for a, b in self._slots(self._head + self.held, n):
            take = slice(offset, offset + b - a)
            self._codes[a:b] = rows.codes[take]
            self._terms[a:b] = pack_terms(rows.terms[take], rows.rel[take], self.bins)
            self._conf[a:b] = rows.conf[take]
            offset += b - a
        self.held += n

    def _views(self, sums: _StepSums, due: list[int]) -> list[ScoreView | None]:
        """The views after steps ``due``, cut from the running sums all at once."""
        bins = self.bins
        hist = (self._hist + sums.hist[due]).reshape(len(due), -1, self._slot + 1)
        negatives = hist[:, :, :bins].copy()
        negatives[:, :, 0] += hist[:, :, bins]
        positives = hist[:, :, bins + 1 : 2 * bins + 1].copy()
        positives[:, :, 0] += hist[:, :, 2 * bins + 1]
        keyed = (
            hist[:, :, :bins].sum(axis=2) + hist[:, :, bins + 1 : 2 * bins + 1].sum(axis=2)
        ) > 0
        truth_counts = positives.sum(axis=2)
        present = keyed | (truth_counts > 0)
        rel = (self._rel_count + sums.rel_count[due])[:, : 4 * bins].reshape(len(due), 4, bins)
        conf = (self._conf_sum + sums.conf_sum[due])[:, : 4 * bins].reshape(len(due), 4, bins)
        scored = rel.sum(axis=(1, 2)).tolist()
        out_of_range = rel[:, 2:].sum(axis=(1, 2)).tolist()
        rel_count, rel_correct, rel_conf = rel.sum(axis=1), rel[:, 1] + rel[:, 3], conf.sum(axis=1)
        brier = sums.brier_values(self._brier.value, due)
        stack = ViewStack(positives, negatives, rel_count, rel_correct, rel_conf, {})
        labels = self.classes.labels
        return [
            ScoreView(
                bins,
                list(labels),
                scored[v],
                out_of_range[v],
                positives[v],
                negatives[v],
                truth_counts[v],
                present[v],
                rel_count[v],
                rel_correct[v],
                rel_conf[v],
                brier[v],
                stack,
                v,
            )
            if scored[v]
            else None
            for v in range(len(due))
        ]

    def evict(self, n: int) -> None:
        """Let the ``n`` oldest records of the window go (those of the prefix first)."""
        from_prefix = min(n, self.prefix)
        self.prefix -= from_prefix
        n = min(n - from_prefix, self.held)
        if n <= 0:
            return
        for a, b in self._slots(self._head, n):
            rows = self._unpack(self._codes[a:b], self._terms[a:b], self._conf[a:b])
            self._tally(rows.codes, rows.rel, rows.terms, rows.conf, -1)
        self._head = (self._head + n) % len(self._terms)
        self.held -= n

    # -- reading -------------------------------------------------------------------------------

    def view(self) -> ScoreView:
        """The statistics as copies, missing keys folded into bin 0."""
        bins, width = self.bins, self._slot + 1
        hist = self._hist.reshape(-1, width)
        negatives = hist[:, :bins].copy()
        negatives[:, 0] += hist[:, bins]
        positives = hist[:, bins + 1 : 2 * bins + 1].copy()
        positives[:, 0] += hist[:, 2 * bins + 1]
        keyed = (hist[:, :bins].sum(axis=1) + hist[:, bins + 1 : 2 * bins + 1].sum(axis=1)) > 0
        truth_counts = positives.sum(axis=1)
        rel_count = self._rel_count[: 4 * bins].reshape(4, bins)
        conf = self._conf_sum[: 4 * bins].reshape(4, bins)
        return ScoreView(
            bins,
            list(self.classes.labels),
            int(rel_count.sum()),
            int(rel_count[2:].sum()),
            positives,
            negatives,
            truth_counts,
            keyed | (truth_counts > 0),
            rel_count.sum(axis=0),
            rel_count[1] + rel_count[3],
            conf.sum(axis=0),
            self._brier.value,
        )

    def nbytes(self) -> int:
        """Bytes of state held: the ring, the sums and the class labels."""
        ring = sum(a.nbytes for a in (self._codes, self._terms, self._conf))
        sums = (
            self._hist.nbytes
            + self._rel_count.nbytes
            + self._conf_sum.nbytes
            + 4 * self._brier.high.nbytes
        )
        return ring + sums + sum(len(label) + 50 for label in self.classes.labels)

    # -- recovery ------------------------------------------------------------------------------

    def _ordered(self, array: NDArray[Any]) -> NDArray[Any]:
        return array[(self._head + np.arange(self.held)) % len(self._terms)]

    def snapshot(self) -> ScoreSnapshot:
        """A versioned copy of the held records; the sums are left out because they recount."""
        return {
            "v": SCORE_SNAPSHOT_VERSION,
            "bins": self.bins,
            "classes": list(self.classes.labels),
            "prefix": self.prefix,
            "codes": self._ordered(self._codes),
            "terms": self._ordered(self._terms),
            "conf": self._ordered(self._conf),
        }

    @classmethod
    def restore(cls, state: ScoreSnapshot, capacity: int = 64) -> ScoreWindow:
        """Rebuild from `snapshot` by recounting its records."""
        version = state.get("v")
        if version not in (1, SCORE_SNAPSHOT_VERSION):
            raise SnapshotError(
                f"score statistics snapshot has version {version!r}, "
                f"this build reads 1 and {SCORE_SNAPSHOT_VERSION}"
            )
        window = cls(state["bins"], max(capacity, len(state["terms"])), state["prefix"])
        window.classes = LabelTable(state["classes"])
        window._grow_classes(len(window.classes))
        codes = np.asarray(state["codes"], dtype=window._codes.dtype)
        terms = np.asarray(state["terms"], dtype=np.float64)
        conf = np.asarray(state["conf"], dtype=np.uint32)
        if version == 1:  # plain terms and a reliability code per record
            rel = np.asarray(state["rel"], dtype=window._rel_dtype)
            rows = ScoreRows(codes, rel, terms, conf)
        else:
            rows = window._unpack(codes, terms, conf)
        window.push(rows)
        return window


Step = tuple[int, int, int, NDArray[np.bool_] | None, bool]
"""One step of a batch: rows ``lo .. hi - 1`` arrive (those ``keep`` marks, when given),
``leaving`` records go, and whether a view is due after it."""

_GROUP = 32  # steps tallied together: bounds the (steps, sums) arrays of a batch


def _arrivals(rows: ScoreRows, steps: Sequence[Step]) -> tuple[ScoreRows, Ints]:
    """The rows the steps take in, in order, and how many each step takes."""
    if all(step[3] is None for step in steps):
        lo, hi = steps[0][0], steps[-1][1]
        arrived = np.asarray([step[1] - step[0] for step in steps], dtype=np.int64)
        if lo == 0 and hi == len(rows):
            return rows, arrived
        return ScoreRows(
            rows.codes[lo:hi], rows.rel[lo:hi], rows.terms[lo:hi], rows.conf[lo:hi]
        ), arrived
    index = [
        np.arange(lo, hi) if keep is None else np.flatnonzero(keep) + lo
        for lo, hi, _, keep, _ in steps
    ]
    arrived = np.asarray([len(i) for i in index], dtype=np.int64)
    return rows.select(np.concatenate(index)), arrived


def _running(signed: Ints) -> Ints:
    """Running totals over steps of ``signed[0] - signed[1]`` ((2, steps, n) in, (steps, n) out).

    Row by row: numpy's cumsum along the first axis is several times slower for so few rows.
    """
    out: Ints = signed[0] - signed[1]
    for i in range(1, len(out)):
        out[i] += out[i - 1]
    return out


@dataclass(frozen=True, slots=True)
class _StepSums:
    """What each step of a group adds to the window's sums, running (row s: steps 0 .. s).

    The Brier parts cover buckets ``first_bucket ..`` only: those of the group's non-zero terms.
    """

    hist: Ints
    rel_count: Ints
    conf_sum: Ints
    first_bucket: int
    high: Ints
    low: Ints

    @classmethod
    def of(cls, window: ScoreWindow, n_steps: int, slot: Ints, rows: ScoreRows) -> _StepSums:
        """Per step, running: the sums of rows arriving minus those of rows leaving.

        Two bincounts do it all: counts (histogram codes, then reliability codes) and integer
        weights (confidence by reliability code, then the Brier mantissa halves by bucket),
        each over ``2 * n_steps`` slots of arrivals and departures.
        """
        bucket, high, low = mantissa_parts(rows.terms)
        used = bucket[rows.terms != 0.0]
        first = int(used.min()) if len(used) else 0
        span = int(used.max()) - first + 1 if len(used) else 1
        spot = np.clip(bucket - first, 0, span - 1)
        n_hist, n_rel = len(window._hist), len(window._rel_count)
        # Indexes are built class-major: numpy's loops along a 3-wide axis cost more than
        # the rows. Counts: slot * width + (class offset + code | n_hist + reliability code).
        width = n_hist + n_rel
        base = slot * width
        counted = rows.codes.T + (window._offsets[:, None] + base[None, :])
        counts = np.bincount(
            np.concatenate([counted.ravel(), rows.rel + (base + n_hist)]),
            minlength=2 * n_steps * width,
        )
        # Weights: slot * heft + (reliability code | n_rel + spot | n_rel + span + spot).
        heft = n_rel + 2 * span
        base = slot * heft + n_rel + spot
        sums = _int_bincount(
            np.concatenate([rows.rel + slot * heft, base, base + span]),
            np.concatenate([rows.conf, high, low]),
            2 * n_steps * heft,
        )
        running_counts = _running(counts.reshape(2, n_steps, width))
        running_sums = _running(sums.reshape(2, n_steps, heft))
        return cls(
            running_counts[:, :n_hist],
            running_counts[:, n_hist:],
            running_sums[:, :n_rel],
            first,
            running_sums[:, n_rel : n_rel + span],
            running_sums[:, n_rel + span :],
        )

    def brier_values(self, base: int, due: list[int]) -> list[int]:
        """The exact Brier sums after steps ``due``, from the sum ``base`` before the group."""
        buckets = range(self.first_bucket, self.first_bucket + self.high.shape[1])
        return [
            base + bucket_total(buckets, high, low)
            for high, low in zip(self.high[due].tolist(), self.low[due].tolist(), strict=True)
        ]


def pack_terms(terms: Floats, rel: NDArray[Any], bins: int) -> Floats:
    """Brier terms carrying their record's flags, for the ring: 8 bytes where 10 were.

    A term is a float >= 0, so its sign is free: negative (-0.0 included) marks a correct top
    label. A record out of range holds no term (calibration is off while it is held), so it is
    +-inf; a record without scores is NaN. `unpack_terms` inverts it exactly.
    """
    flags = rel.astype(np.int64) // bins  # (out_of_range * 2 + correct), 4 without scores
    packed = np.where(flags >= 2, np.inf, terms)
    packed = np.where(flags % 2 == 1, -packed, packed)
    return np.where(flags == 4, np.nan, packed)


def unpack_terms(
    packed: Floats,
) -> tuple[Floats, NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Terms (0 out of range or unscored), correct, out of range, unscored, from `pack_terms`."""
    unscored = np.isnan(packed)
    outside = np.isinf(packed)
    terms = np.where(unscored | outside, 0.0, np.abs(packed))
    return terms, np.signbit(packed), outside, unscored


def _plain(scores: Floats) -> bool:
    """Whether every score is present and in [0, 1] (NaN fails both comparisons)."""
    return bool(scores.min() >= 0.0) and bool(scores.max() <= 1.0)


def _int_bincount(index: NDArray[Any], weights: NDArray[Any], length: int) -> Ints:
    """Integer-weighted bincount, exact: float sums of <= 2**31 over <= 2**21 rows."""
    if len(index) <= _CHUNK:
        return np.bincount(index, weights, length).astype(np.int64)
    out = np.zeros(length, dtype=np.int64)
    for start in range(0, len(index), _CHUNK):
        part = np.bincount(index[start : start + _CHUNK], weights[start : start + _CHUNK], length)
        out += part.astype(np.int64)
    return out


def batch_rows(
    scores: ScoreWindow | None, bins: int, cols: ModelColumns, held: int, capacity: int
) -> tuple[ScoreWindow | None, ScoreRows | None]:
    """A window's score state and its rows for one batch, or (None, None) when not needed.

    The state starts with the first batch that brings score maps (the records the window
    already holds become its unscored prefix, ``held``) and is dropped once it holds no scored
    record and a batch brings none, so a model that never sends score maps pays nothing.
    ``bins`` 0 turns score statistics off.
    """
    if bins == 0:
        return None, None
    if cols.scores is None:
        if scores is None or scores.scored == 0:
            return None, None
        empty = np.empty((len(cols), 0), dtype=np.float64)
        return scores, scores.prepare(cols.labels, cols.truth, cols.pred, [], empty)
    if scores is None:
        scores = ScoreWindow(bins, capacity, prefix=held)
    return scores, scores.prepare(cols.labels, cols.truth, cols.pred, cols.score_keys, cols.scores)
