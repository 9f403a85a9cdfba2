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
  mantissa times a power of two. Mantissas are summed as integers in one int64 accumulator per
  binary exponent (split in 26-bit halves so a batch's float bincount stays below 2**53), so the
  sum of the terms held is exact whatever the order of millions of adds and removes; it becomes a
  float only when a document is built, by one correctly rounded integer division.

FIFO storage: each record held keeps its truth class, flags, one bin code per class, its Brier
term and its confidence: ``2 + classes`` bytes plus 12 (17 bytes with 3 classes and up to 254
bins). Records leave oldest first (count and time windows both evict in read order), so the
caller only says how many leave. Classes are the labels seen as truth or as score-map keys; a
label missing from a record's score map has score 0 (bin 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

from flows.columns import LabelTable
from flows.errors import SnapshotError

SCORE_SNAPSHOT_VERSION = 1
CONF_ONE = 1 << 31  # fixed-point unit of confidences: 1.0 is 2**31
MAX_BINS = 1000

SCORED, CORRECT, OUT_OF_RANGE = 1, 2, 4  # flag bits of a held record

# Brier accumulator: a float64 x = mant * 2**(exp - 53) with mant < 2**53 (np.frexp), kept in
# bucket exp + 1074 >= 0, so x = mant * 2**(bucket - BRIER_UNIT) for every finite x, subnormals too.
BRIER_UNIT = 1074 + 53
_EXP_BUCKETS = 1024 + 1074 + 1
_HALF = 26
_LOW_MASK = (1 << _HALF) - 1
_CHUNK = 1 << 21  # rows per float bincount: sums of < 2**31 (or 2**27) values stay below 2**53

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


class ExactSum:
    """An exact sum of float64 values, kept as int64 mantissa sums per binary exponent.

    ``add`` with ``sign`` -1 removes exactly what ``add`` with +1 added; ``value`` is the sum in
    units of 2**-1127 (a Python int), from which any ratio is one correctly rounded division.
    """

    __slots__ = ("high", "low")

    def __init__(self) -> None:
        self.high: Ints = np.zeros(_EXP_BUCKETS, dtype=np.int64)
        self.low: Ints = np.zeros(_EXP_BUCKETS, dtype=np.int64)

    def add(self, values: Floats, sign: int = 1) -> None:
        """Add (``sign`` 1) or remove (``sign`` -1) finite, non-negative ``values``."""
        for start in range(0, len(values), _CHUNK):
            fraction, exponent = np.frexp(values[start:start + _CHUNK])
            mant = (fraction * float(1 << 53)).astype(np.int64)  # exact: 53 significant bits
            bucket = exponent.astype(np.int64) + 1074
            high = np.bincount(bucket, (mant >> _HALF).astype(np.float64), _EXP_BUCKETS)
            low = np.bincount(bucket, (mant & _LOW_MASK).astype(np.float64), _EXP_BUCKETS)
            if sign > 0:
                self.high += high.astype(np.int64)
                self.low += low.astype(np.int64)
            else:
                self.high -= high.astype(np.int64)
                self.low -= low.astype(np.int64)

    @property
    def value(self) -> int:
        """The sum in units of 2**-1127."""
        total = 0
        for bucket in np.flatnonzero(self.high | self.low).tolist():
            total += ((int(self.high[bucket]) << _HALF) + int(self.low[bucket])) << bucket
        return total

    def ratio(self, den: int) -> float:
        """The sum divided by ``den``, correctly rounded."""
        return self.value / (den << BRIER_UNIT)


@dataclass(frozen=True, slots=True)
class ScoreRows:
    """A batch's score statistics inputs, computed once per batch, row-aligned with it.

    Attributes:
        truth: class code of each record's true label.
        flags: `SCORED`, `CORRECT`, `OUT_OF_RANGE` bits.
        bins: bin code per record and class (``bins`` = the key is missing: score 0).
        terms: each record's Brier term (0 when unscored or out of range).
        conf: top-label confidence in units of 2**-31 (clipped into [0, 1]).
    """

    truth: Ints
    flags: NDArray[np.uint8]
    bins: Ints
    terms: Floats
    conf: Ints

    def __len__(self) -> int:
        return len(self.truth)


@dataclass(frozen=True, slots=True)
class ScoreView:
    """What a document needs of the score statistics at one moment (arrays are copies).

    ``positives`` and ``negatives`` are (classes, bins) histograms with missing keys folded into
    bin 0; ``present`` says which classes occur as truth or as a score-map key.
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
    brier_sum: int  # units of 2**-1127 (`ExactSum.value`)


class ScoreSnapshot(TypedDict):
    """The picklable, versioned copy of a `ScoreWindow`, oldest record first."""

    v: int
    bins: int
    classes: list[str]
    prefix: int
    truth: Ints
    flags: NDArray[np.uint8]
    codes: NDArray[Any]
    terms: Floats
    conf: NDArray[np.uint32]


class ScoreWindow:
    """Score statistics of the records a window holds, oldest first.

    ``prefix`` counts records the window held before this state existed (they have no scores);
    `evict` lets those go first.
    """

    __slots__ = ("_brier", "_codes", "_conf", "_flags", "_head", "_hist", "_rel", "_terms",
                 "_truth", "_truth_counts", "bins", "classes", "held", "out_of_range", "prefix",
                 "scored")

    def __init__(self, bins: int, capacity: int = 64, prefix: int = 0) -> None:
        if not 1 <= bins <= MAX_BINS:
            raise ValueError(f"score bins must be 1 to {MAX_BINS}")
        self.bins = bins
        self.classes = LabelTable()
        self.prefix = prefix
        self.held = 0  # records in the ring (scored or not)
        self.scored = 0
        self.out_of_range = 0
        self._head = 0
        capacity = max(capacity, 1)
        self._truth: NDArray[Any] = np.zeros(capacity, dtype=np.uint8)
        self._flags: NDArray[np.uint8] = np.zeros(capacity, dtype=np.uint8)
        self._codes: NDArray[Any] = np.zeros((capacity, 0), dtype=code_dtype(bins + 1))
        self._terms: Floats = np.zeros(capacity, dtype=np.float64)
        self._conf: NDArray[np.uint32] = np.zeros(capacity, dtype=np.uint32)
        self._hist: Ints = np.zeros((2, 0, bins + 1), dtype=np.int64)  # [negative, positive]
        self._truth_counts: Ints = np.zeros(0, dtype=np.int64)
        self._rel: Ints = np.zeros((3, bins), dtype=np.int64)  # count, correct, conf sum
        self._brier = ExactSum()

    # -- batch preparation ---------------------------------------------------------------------

    def _grow_classes(self, n: int) -> None:
        old = self._codes.shape[1]
        if n <= old:
            return
        codes = np.full((len(self._codes), n), self.bins, dtype=self._codes.dtype)
        codes[:, :old] = self._codes
        self._codes = codes
        hist = np.zeros((2, n, self.bins + 1), dtype=np.int64)
        hist[:, :old] = self._hist
        hist[0, old:, self.bins] = self.scored  # records held so far lack the new keys
        self._hist = hist
        self._truth_counts = np.concatenate(
            [self._truth_counts, np.zeros(n - old, dtype=np.int64)])
        if code_dtype(n) != self._truth.dtype:
            self._truth = self._truth.astype(code_dtype(n))

    def prepare(self, labels: Sequence[str], truth: NDArray[Any], pred: NDArray[Any],
                keys: Sequence[str], scores: Floats) -> ScoreRows:
        """Turn a batch's columns into rows ready to `push`.

        Args:
            labels: the batch's label table; ``truth`` and ``pred`` are codes into it.
            truth: true label code per record.
            pred: predicted label code per record (the arg-max of its score map).
            keys: the score-map labels, one per column of ``scores``.
            scores: (records, keys) scores; NaN where a record's map lacks the key, a row of
                NaN where the record sent a bare label (it is held but not scored).
        """
        n = len(truth)
        truth = np.asarray(truth, dtype=np.int64)
        used = np.flatnonzero(np.bincount(truth, minlength=len(labels)))
        remap = np.zeros(len(labels), dtype=np.int64)
        remap[used] = [self.classes.code(labels[i]) for i in used.tolist()]
        key_class = np.asarray([self.classes.code(k) for k in keys], dtype=np.int64)
        pred_class = np.full(n, -1, dtype=np.int64)
        pred = np.asarray(pred, dtype=np.int64)
        for code in np.unique(pred).tolist():  # a predicted label is a key of its own map
            if code >= 0 and labels[code] in self.classes.index:
                pred_class[pred == code] = self.classes.index[labels[code]]
        self._grow_classes(len(self.classes))
        tclass = remap[truth]

        missing = np.isnan(scores)
        scored = ~missing.all(axis=1) if len(keys) else np.zeros(n, dtype=bool)
        filled = np.where(missing, 0.0, scores)
        outside = ((filled < 0.0) | (filled > 1.0)).any(axis=1)
        codes = np.full((n, len(self.classes)), self.bins, dtype=np.int64)
        codes[:, key_class] = np.where(missing, self.bins, bin_of(filled, self.bins))
        hot = key_class[None, :] == tclass[:, None]
        terms = ((filled - hot) ** 2).sum(axis=1) + ~hot.any(axis=1)
        terms[~scored | outside] = 0.0
        top = np.where(missing, -np.inf, scores).max(axis=1, initial=-np.inf)
        conf = np.rint(np.clip(top, 0.0, 1.0) * CONF_ONE).astype(np.int64)
        conf[~scored] = 0
        flags = (scored * SCORED | (scored & (pred_class == tclass)) * CORRECT
                 | (scored & outside) * OUT_OF_RANGE).astype(np.uint8)
        codes[~scored] = self.bins
        return ScoreRows(tclass, flags, codes, terms, conf)

    # -- the one tally, for add and remove -----------------------------------------------------

    def _tally(self, truth: NDArray[Any], flags: NDArray[np.uint8], codes: NDArray[Any],
               terms: Floats, conf: NDArray[Any], sign: int) -> None:
        scored = (flags & SCORED).astype(bool)
        if not scored.all():
            truth, flags, codes = truth[scored], flags[scored], codes[scored]
            terms, conf = terms[scored], conf[scored]
        n = len(truth)
        if n == 0:
            return
        n_classes, width = codes.shape[1], self.bins + 1
        truth, codes = truth.astype(np.int64), codes.astype(np.int64)
        positive = np.arange(n_classes, dtype=np.int64)[None, :] == truth[:, None]
        index = (positive * n_classes + np.arange(n_classes)) * width + codes
        hist = np.bincount(index.ravel(), minlength=2 * n_classes * width)
        top = np.where(codes == self.bins, -1, codes).max(axis=1)
        correct = (flags & CORRECT).astype(bool)
        rel = np.stack([np.bincount(top, minlength=self.bins),
                        np.bincount(top[correct], minlength=self.bins),
                        _int_bincount(top, conf, self.bins)])
        counts = np.bincount(truth, minlength=n_classes)
        outside = int(np.count_nonzero(flags & OUT_OF_RANGE))
        if sign > 0:
            self._hist += hist.reshape(2, n_classes, width)
            self._rel += rel
            self._truth_counts += counts
        else:
            self._hist -= hist.reshape(2, n_classes, width)
            self._rel -= rel
            self._truth_counts -= counts
        self._brier.add(terms, sign)
        self.scored += sign * n
        self.out_of_range += sign * outside

    # -- the FIFO ring -------------------------------------------------------------------------

    def _slots(self, start: int, n: int) -> list[tuple[int, int]]:
        size = len(self._flags)
        lo = start % size
        if lo + n <= size:
            return [(lo, lo + n)]
        return [(lo, size), (0, lo + n - size)]

    def _grow_ring(self, need: int) -> None:
        size = len(self._flags)
        if need <= size:
            return
        new_size = max(need, 2 * size)
        order = (self._head + np.arange(self.held)) % size
        for name in ("_truth", "_flags", "_codes", "_terms", "_conf"):
            old = getattr(self, name)
            new = np.zeros((new_size, *old.shape[1:]), dtype=old.dtype)
            new[:self.held] = old[order]
            setattr(self, name, new)
        self._head = 0

    def push(self, rows: ScoreRows, lo: int = 0, hi: int | None = None) -> None:
        """Add rows ``lo .. hi - 1`` of a prepared batch as the newest records."""
        hi = len(rows) if hi is None else hi
        n = hi - lo
        if n <= 0:
            return
        self._grow_ring(self.held + n)
        sel = slice(lo, hi)
        codes = rows.bins[sel]
        width = self._codes.shape[1]
        if codes.shape[1] < width:  # classes joined after this batch was prepared
            codes = np.hstack([codes, np.full((n, width - codes.shape[1]), self.bins)])
        offset = 0
        for a, b in self._slots(self._head + self.held, n):
            take = slice(lo + offset, lo + offset + b - a)
            self._truth[a:b] = rows.truth[take]
            self._flags[a:b] = rows.flags[take]
            self._codes[a:b] = codes[offset:offset + b - a]
            self._terms[a:b] = rows.terms[take]
            self._conf[a:b] = rows.conf[take]
            offset += b - a
        self.held += n
        self._tally(rows.truth[sel], rows.flags[sel], codes, rows.terms[sel], rows.conf[sel], 1)

    def evict(self, n: int) -> None:
        """Let the ``n`` oldest records of the window go (those of the prefix first)."""
        from_prefix = min(n, self.prefix)
        self.prefix -= from_prefix
        n = min(n - from_prefix, self.held)
        for a, b in self._slots(self._head, n):
            self._tally(self._truth[a:b], self._flags[a:b], self._codes[a:b], self._terms[a:b],
                        self._conf[a:b], -1)
        self._head = (self._head + n) % len(self._flags)
        self.held -= n

    @property
    def count(self) -> int:
        """Records of the window this state accounts for (held here or in the prefix)."""
        return self.prefix + self.held

    # -- reading -------------------------------------------------------------------------------

    def view(self) -> ScoreView:
        """The statistics as copies, missing keys folded into bin 0."""
        hist = self._hist[:, :, :self.bins].copy()
        hist[:, :, 0] += self._hist[:, :, self.bins]
        keyed = self._hist[:, :, :self.bins].sum(axis=(0, 2)) > 0
        return ScoreView(self.bins, list(self.classes.labels), self.scored, self.out_of_range,
                         hist[1], hist[0], self._truth_counts.copy(),
                         keyed | (self._truth_counts > 0), self._rel[0].copy(),
                         self._rel[1].copy(), self._rel[2].copy(), self._brier.value)

    def nbytes(self) -> int:
        """Bytes of state held: the ring, the sums and the class labels."""
        ring = sum(a.nbytes for a in (self._truth, self._flags, self._codes, self._terms,
                                      self._conf))
        sums = (self._hist.nbytes + self._rel.nbytes + self._truth_counts.nbytes
                + self._brier.high.nbytes + self._brier.low.nbytes)
        return ring + sums + sum(len(label) + 50 for label in self.classes.labels)

    # -- recovery ------------------------------------------------------------------------------

    def _ordered(self, array: NDArray[Any]) -> NDArray[Any]:
        return array[(self._head + np.arange(self.held)) % len(self._flags)]

    def snapshot(self) -> ScoreSnapshot:
        """A versioned copy of the held records; the sums are left out because they recount."""
        return {"v": SCORE_SNAPSHOT_VERSION, "bins": self.bins,
                "classes": list(self.classes.labels), "prefix": self.prefix,
                "truth": self._ordered(self._truth).astype(np.int64),
                "flags": self._ordered(self._flags), "codes": self._ordered(self._codes),
                "terms": self._ordered(self._terms),
                "conf": self._ordered(self._conf).astype(np.uint32)}

    @classmethod
    def restore(cls, state: ScoreSnapshot, capacity: int = 64) -> ScoreWindow:
        """Rebuild from `snapshot` by recounting its records."""
        if state.get("v") != SCORE_SNAPSHOT_VERSION:
            raise SnapshotError(f"score statistics snapshot has version {state.get('v')!r}, "
                                f"this build reads {SCORE_SNAPSHOT_VERSION}")
        window = cls(state["bins"], max(capacity, len(state["flags"])), state["prefix"])
        window.classes = LabelTable(state["classes"])
        window._grow_classes(len(window.classes))
        codes = np.asarray(state["codes"], dtype=np.int64).reshape(len(state["flags"]), -1)
        rows = ScoreRows(np.asarray(state["truth"], dtype=np.int64),
                         np.asarray(state["flags"], dtype=np.uint8), codes,
                         np.asarray(state["terms"], dtype=np.float64),
                         np.asarray(state["conf"], dtype=np.int64))
        window.push(rows)
        return window


def _int_bincount(index: Ints, weights: NDArray[Any], length: int) -> Ints:
    """Integer-weighted bincount, exact: float sums of < 2**31 values over <= 2**21 rows."""
    out = np.zeros(length, dtype=np.int64)
    for start in range(0, len(index), _CHUNK):
        part = np.bincount(index[start:start + _CHUNK],
                           weights[start:start + _CHUNK].astype(np.float64), length)
        out += part.astype(np.int64)
    return out
