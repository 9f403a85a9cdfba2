"""Score statistics of a window: scikit-learn's values, exact add/remove, faithful snapshots."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.errors import SnapshotError
from flows.output import score_metrics
from flows.windows.scores import BRIER_UNIT, ExactSum, ScoreView, ScoreWindow, bin_of
from tests.score_reference import (
    ScoredRecord,
    assert_scores_equal,
    expected_scores,
    quantize,
    top_label,
)

LABELS = ["A", "B", "C", "D"]


def columns(batch: Sequence[ScoredRecord]) -> tuple[list[str], Any, Any, list[str], Any]:
    """A batch as the parser hands it over: label table, codes, score keys and score matrix."""
    labels: dict[str, int] = {}
    keys: dict[str, int] = {}
    for _, entry in batch:
        if not isinstance(entry, str):
            for key in entry:
                keys.setdefault(key, len(keys))
    truth = [labels.setdefault(t, len(labels)) for t, _ in batch]
    pred = [
        labels.setdefault(e if isinstance(e, str) else top_label(e), len(labels)) for _, e in batch
    ]
    scores = np.full((len(batch), len(keys)), np.nan)
    for i, (_, entry) in enumerate(batch):
        if not isinstance(entry, str):
            for key, score in entry.items():
                scores[i, keys[key]] = score
    return (
        list(labels),
        np.asarray(truth, dtype=np.int32),
        np.asarray(pred, dtype=np.int32),
        list(keys),
        scores,
    )


def feed(window: ScoreWindow, batch: Sequence[ScoredRecord], size: int) -> None:
    """Add a batch as a count window of ``size`` would: push, then let the oldest go."""
    if not batch:
        return
    rows = window.prepare(*columns(batch))
    window.evict(max(0, min(window.count, window.count + len(batch) - size)))
    window.push(rows)
    window.evict(max(0, window.count - size))


def random_map(
    rng: random.Random, classes: Sequence[str], normalized: bool = True, outside: bool = False
) -> dict[str, float]:
    """A score map over a random subset of ``classes``; sums to 1 when ``normalized``."""
    keys = [c for c in classes if rng.random() < 0.9] or [classes[0]]
    raw = [rng.choice([rng.random(), round(rng.random(), 2), 0.0, 1.0]) for _ in keys]
    if normalized and sum(raw) > 0:
        total = sum(raw)
        raw = [r / total for r in raw]
    if outside:
        raw[0] = rng.choice([-0.25, 1.5, 3.0])
    return dict(zip(keys, raw, strict=True))


def random_stream(
    seed: int,
    n: int,
    classes: Sequence[str],
    p_bare: float = 0.0,
    p_outside: float = 0.0,
    normalized: bool = True,
) -> list[ScoredRecord]:
    rng = random.Random(seed)
    stream: list[ScoredRecord] = []
    for _ in range(n):
        truth = rng.choice(classes)
        if rng.random() < p_bare:
            stream.append((truth, rng.choice(classes)))
        else:
            stream.append((truth, random_map(rng, classes, normalized, rng.random() < p_outside)))
    return stream


def run_against_oracle(stream: Sequence[ScoredRecord], size: int, bins: int, seed: int) -> float:
    """Feed ``stream`` in random batches; after each, compare with the oracle. Worst diff."""
    rng = random.Random(seed)
    window = ScoreWindow(bins, capacity=size)
    pos, worst = 0, 0.0
    while pos < len(stream):
        n = rng.choice([1, 2, 3, 7, 20, 64, size + 3])
        feed(window, stream[pos : pos + n], size)
        pos = min(pos + n, len(stream))
        actual = score_metrics.compute(window.view())
        expected = expected_scores(stream[max(0, pos - size) : pos], bins)
        if expected is None:
            assert actual is None
        else:
            worst = max(worst, assert_scores_equal(actual, expected))
    return worst


@pytest.mark.parametrize("seed", range(12))
def test_random_streams_match_scikit_learn(seed: int) -> None:
    rng = random.Random(seed)
    classes = LABELS[: rng.choice([2, 2, 3, 4])]
    stream = random_stream(
        seed,
        rng.choice([60, 150, 300]),
        classes,
        p_bare=rng.choice([0.0, 0.1]),
        p_outside=rng.choice([0.0, 0.0, 0.02]),
        normalized=rng.random() < 0.8,
    )
    worst = run_against_oracle(
        stream, rng.choice([1, 5, 40, 100]), rng.choice([1, 2, 10, 100]), seed
    )
    assert worst <= 1e-9


def test_two_class_window_reports_a_threshold_table_and_clean_calibration() -> None:
    stream: list[ScoredRecord] = [
        ("A", {"A": 0.8, "B": 0.2}),
        ("B", {"A": 0.3, "B": 0.7}),
        ("B", {"A": 0.6, "B": 0.4}),
        ("A", {"A": 0.55, "B": 0.45}),
    ]
    window = ScoreWindow(10)
    feed(window, stream, 100)
    doc = score_metrics.compute(window.view())
    assert doc is not None
    assert doc["count"] == 4 and doc["thresholds"]["positive"] == "B"
    # B scores 0.2, 0.7, 0.4, 0.45 -> bins 2, 7, 4, 4; positives (truth B) in bins 7 and 4.
    assert doc["thresholds"]["recall"][5] == 0.5 and doc["thresholds"]["fpr"][5] == 0.0
    assert doc["per_class"]["B"]["roc_auc"] == pytest.approx(0.875)
    assert doc["brier"] == pytest.approx((0.08 + 0.18 + 0.72 + 0.405) / 4)
    assert doc["ece"] is not None and doc["reliability"]["count"] == [1, 1, 1, 1]


def test_one_class_present_gives_null_ranking_never_nan() -> None:
    window = ScoreWindow(10)
    feed(window, [("A", {"A": 0.9, "B": 0.1}), ("A", {"A": 0.4, "B": 0.6})], 10)
    doc = score_metrics.compute(window.view())
    assert doc is not None
    assert doc["per_class"]["A"]["roc_auc"] is None
    assert doc["per_class"]["A"]["average_precision"] == 1.0  # scikit-learn's, defined
    assert doc["per_class"]["B"] == {"roc_auc": None, "average_precision": None, "support": 0}
    assert doc["macro_roc_auc"] is None and doc["macro_average_precision"] is None


def test_scores_outside_unit_interval_rank_clipped_and_null_calibration() -> None:
    window = ScoreWindow(4)
    feed(window, [("A", {"A": 1.7, "B": -0.2}), ("B", {"A": 0.1, "B": 0.9})], 2)
    doc = score_metrics.compute(window.view())
    assert doc is not None and doc["out_of_range"] == 1
    assert doc["brier"] is None and doc["ece"] is None and doc["reliability"] is None
    assert doc["per_class"]["A"]["roc_auc"] == 1.0
    feed(window, [("B", {"A": 0.2, "B": 0.8}), ("A", {"A": 0.7, "B": 0.3})], 2)
    doc = score_metrics.compute(window.view())
    assert doc is not None and doc["out_of_range"] == 0 and doc["brier"] is not None


def test_bare_labels_are_held_but_not_scored() -> None:
    window = ScoreWindow(10)
    feed(window, [("A", "A"), ("B", {"A": 0.2, "B": 0.8}), ("A", "B")], 3)
    assert window.held == 3 and window.view().scored == 1
    feed(window, [("A", "A")], 3)
    feed(window, [("A", "A")], 3)
    assert score_metrics.compute(window.view()) is None  # no scored record left


def test_prefix_records_leave_first() -> None:
    window = ScoreWindow(10, prefix=2)  # the window already held two records without scores
    feed(window, [("A", {"A": 0.7, "B": 0.3})], 3)
    assert window.count == 3 and window.view().scored == 1
    feed(window, [("B", {"A": 0.1, "B": 0.9})], 3)
    assert window.prefix == 1 and window.view().scored == 2


def test_bins_follow_the_documented_rule() -> None:
    scores = np.array([-1.0, 0.0, 0.0099, 0.01, 0.5, 0.999, 1.0, 7.0])
    assert bin_of(scores, 100).tolist() == [quantize(s, 100) for s in scores]
    assert bin_of(scores, 100).tolist() == [0, 0, 0, 1, 50, 99, 99, 99]


def _state(window: ScoreWindow) -> tuple[Any, ...]:
    v: ScoreView = window.view()
    return (
        v.classes,
        v.scored,
        v.out_of_range,
        v.positives.tolist(),
        v.negatives.tolist(),
        v.truth_counts.tolist(),
        v.present.tolist(),
        v.rel_count.tolist(),
        v.rel_correct.tolist(),
        v.rel_conf.tolist(),
        v.brier_sum,
    )


scores_st = st.floats(-0.5, 1.5, allow_nan=False) | st.sampled_from([0.0, 1.0, 0.5, 1e-300])
entry_st = st.one_of(
    st.sampled_from(LABELS[:3]), st.dictionaries(st.sampled_from(LABELS[:3]), scores_st, min_size=1)
)
record_st = st.tuples(st.sampled_from(LABELS[:3]), entry_st)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(record_st, max_size=30),
    st.lists(record_st, min_size=1, max_size=30),
    st.sampled_from([1, 3, 100]),
)
def test_add_then_remove_is_identity(
    before: list[ScoredRecord], batch: list[ScoredRecord], bins: int
) -> None:
    """Records added and then let go leave every sum exactly as it was before them."""
    window = ScoreWindow(bins)
    feed(window, before, len(before) + len(batch))
    feed(window, batch, len(before) + len(batch))
    window.evict(len(before))
    alone = ScoreWindow(bins)
    alone.classes = type(window.classes)(window.classes.labels)
    feed(alone, batch, len(batch))
    assert _state(window) == _state(alone)
    window.evict(len(batch))
    view = window.view()
    assert view.scored == 0 and view.brier_sum == 0 and view.out_of_range == 0
    for sums in (
        view.positives,
        view.negatives,
        view.truth_counts,
        view.rel_count,
        view.rel_correct,
        view.rel_conf,
    ):
        assert not sums.any()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(record_st, min_size=1, max_size=80),
    st.integers(1, 25),
    st.lists(st.integers(1, 30), min_size=1, max_size=5),
    st.sampled_from([2, 10, 100]),
)
def test_window_equals_recompute_of_last_n(
    stream: list[ScoredRecord], size: int, cuts: list[int], bins: int
) -> None:
    window = ScoreWindow(bins)
    pos, turn = 0, 0
    while pos < len(stream):
        n = cuts[turn % len(cuts)]
        feed(window, stream[pos : pos + n], size)
        pos, turn = pos + n, turn + 1
    fresh = ScoreWindow(bins)
    fresh.classes = type(window.classes)(window.classes.labels)  # same class codes
    feed(fresh, stream[-size:], size)
    assert _state(window)[1:] == _state(fresh)[1:]
    expected = expected_scores(stream[-size:], bins)
    actual = score_metrics.compute(window.view())
    if expected is None:
        assert actual is None
    else:
        assert_scores_equal(actual, expected)


def test_snapshot_round_trip_continues_identically() -> None:
    stream = random_stream(7, 400, LABELS[:3], p_bare=0.1, p_outside=0.01)
    a = ScoreWindow(20, capacity=50)
    for i in range(0, 200, 13):
        feed(a, stream[i : min(i + 13, 200)], 50)
    state = pickle.loads(pickle.dumps(a.snapshot()))
    b = ScoreWindow.restore(state, capacity=50)
    assert _state(b) == _state(a)
    for i in range(200, 400, 17):
        feed(a, stream[i : i + 17], 50)
        feed(b, stream[i : i + 17], 50)
        assert _state(b) == _state(a)
    state["v"] = 99
    with pytest.raises(SnapshotError):
        ScoreWindow.restore(state)


def test_version_1_snapshot_restores_identically() -> None:
    """A checkpoint of version 1 (a stored reliability code, plain terms) still restores."""
    stream = random_stream(11, 200, LABELS[:3], p_bare=0.1, p_outside=0.02)
    window = ScoreWindow(20, capacity=50)
    for i in range(0, 200, 13):
        feed(window, stream[i : i + 13], 50)
    state = window.snapshot()
    rows = window._unpack(state["codes"], state["terms"], state["conf"])
    old = {**state, "v": 1, "rel": rows.rel, "terms": rows.terms}
    assert _state(ScoreWindow.restore(old, capacity=50)) == _state(window)  # type: ignore[arg-type]


def test_snapshot_is_a_copy() -> None:
    window = ScoreWindow(10, capacity=4)
    feed(window, [("A", {"A": 0.9, "B": 0.1})] * 4, 4)
    state = window.snapshot()
    before = state["terms"].copy()
    feed(window, [("B", {"A": 0.9, "B": 0.1})] * 4, 4)
    assert (state["terms"] == before).all()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(0, 1e300, allow_nan=False) | st.sampled_from([5e-324, 2.2e-308, 0.0]), max_size=60
    )
)
def test_exact_sum_is_exact(values: list[float]) -> None:
    acc = ExactSum()
    acc.add(np.asarray(values, dtype=np.float64))
    assert Fraction(acc.value, 1 << BRIER_UNIT) == sum(map(Fraction, values), Fraction(0))
    acc.add(np.asarray(values[: len(values) // 2], dtype=np.float64), -1)
    rest = values[len(values) // 2 :]
    assert Fraction(acc.value, 1 << BRIER_UNIT) == sum(map(Fraction, rest), Fraction(0))


def test_brier_does_not_drift_over_millions_of_adds_and_removes() -> None:
    """3,000,000 records through a 1,000-record window: the Brier sum is still exact.

    Terms mix near-perfect records (about 1e-12) with badly wrong ones (about 2), where a
    float running sum would lose the small ones and drift.
    """
    rng = np.random.default_rng(13)
    size, batch, total = 1000, 5000, 3_000_000
    window = ScoreWindow(100, capacity=size)
    labels = ["A", "B", "C"]
    last_truth = last_scores = np.zeros(0)
    for _ in range(total // batch):
        truth = rng.integers(0, 3, batch).astype(np.int32)
        good = rng.random(batch) < 0.5
        top = np.where(good, 1 - rng.random(batch) * 1e-6, rng.random(batch) * 0.01)
        scores = np.empty((batch, 3))
        scores[np.arange(batch), truth] = top
        other = (truth + 1 + rng.integers(0, 2, batch)) % 3
        rest = 1 - top
        scores[np.arange(batch), other] = rest
        scores[np.arange(batch), 3 - truth - other] = 0.0
        pred = scores.argmax(axis=1).astype(np.int32)
        rows = window.prepare(labels, truth, pred, labels, scores)
        window.evict(window.count)
        window.push(rows, batch - size)
        last_truth, last_scores = truth[-size:], scores[-size:]
    onehot = np.eye(3)[last_truth]
    terms = ((last_scores - onehot) ** 2).sum(axis=1)
    exact = sum(map(Fraction, terms.tolist()), Fraction(0)) / size
    view = window.view()
    assert Fraction(view.brier_sum, size << BRIER_UNIT) == exact
    doc = score_metrics.compute(view)
    assert doc is not None and doc["count"] == size
    assert doc["brier"] == float(exact)
    from sklearn.metrics import brier_score_loss

    reference = brier_score_loss(last_truth, last_scores, labels=[0, 1, 2], scale_by_half=False)
    assert math.isclose(doc["brier"], reference, rel_tol=1e-9, abs_tol=0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(record_st, st.booleans()), min_size=1, max_size=60),
    st.integers(1, 20),
    st.integers(1, 15),
)
def test_advance_follows_a_window_that_skips_late_records(
    stream: list[tuple[ScoredRecord, bool]], size: int, step: int
) -> None:
    """A window holding the last ``size`` records that were not late, fed in steps."""
    window = ScoreWindow(10, capacity=1)
    held: list[ScoredRecord] = []
    for pos in range(0, len(stream), step):
        part = stream[pos : pos + step]
        keep = np.asarray([not late for _, late in part])
        before = len(held)
        held = (held + [r for r, late in part if not late])[-size:]
        rows = window.prepare(*columns([r for r, _ in part]))
        window.advance(rows, 0, len(part), before + int(keep.sum()) - len(held), keep)
        assert window.count == len(held)
    expected = expected_scores(held, 10)
    actual = score_metrics.compute(window.view())
    if expected is None:
        assert actual is None
    else:
        assert_scores_equal(actual, expected)


def scored_batch(batch: Sequence[ScoredRecord], start: int) -> Any:
    """The batch as the parser hands a window its columns, score maps included."""
    from flows.parsing.batches import ModelColumns

    labels, truth, pred, keys, scores = columns(batch)
    return ModelColumns(
        "m",
        labels,
        truth,
        pred,
        [f"r{start + i}" for i in range(len(batch))],
        np.arange(start, start + len(batch), dtype=np.int64) * 1000,
        score_keys=keys,
        scores=scores if keys else None,
    )


@pytest.mark.parametrize("kind", ["count", "time"])
def test_window_views_carry_the_oracle_scores_and_survive_restore(kind: str) -> None:
    from flows.output.documents import document
    from flows.windows.count import CountPolicy
    from flows.windows.time import TimePolicy

    size = 40
    policy: Any = CountPolicy(size, 10) if kind == "count" else TimePolicy(size * 1000, 10)
    smaller: Any = CountPolicy(25, 10) if kind == "count" else TimePolicy(25 * 1000, 10)
    stream = random_stream(3, 300, LABELS[:3], p_bare=0.2)
    window = policy.new()
    pos = 0
    for n in [7, 30, 1, 50, 13] * 3:
        batch = stream[pos : pos + n]
        if not batch:
            break
        for view in window.add(scored_batch(batch, pos), 10):
            held = stream[max(0, view.seq - size) : view.seq]
            expected = expected_scores(held, 10)
            doc = document("m", view, 0)
            if expected is None:
                assert "scores" not in doc
            else:
                assert_scores_equal(doc["scores"], expected)
        pos += n
        if pos > 150 and kind == "count":  # restore into a smaller window: it keeps the newest
            window = smaller.restore(pickle.loads(pickle.dumps(window.snapshot())))
            size = 25
    other = CountPolicy(size, 20) if kind == "count" else TimePolicy(size * 1000, 20)
    restarted = other.restore(window.snapshot())  # other bins: score statistics restart
    assert restarted.view().scores is None
    more = stream[:5]
    restarted.add(scored_batch(more, pos), 0)
    view = restarted.view()
    assert view.scores is not None
    assert view.scores.scored == sum(1 for _, e in more if not isinstance(e, str))
