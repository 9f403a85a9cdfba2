"""Change detectors (flows.windows.drift): direction, batch independence, snapshots."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from flows.windows.drift import DriftConfig, DriftWatch, running_sum, true_class_scores


def stream(seed: int, *levels: tuple[int, float]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(n) < p for n, p in levels])


def feed(
    watch: DriftWatch, correct: np.ndarray, batch: int, scores: np.ndarray | None = None
) -> list[tuple[int, str, bool]]:
    found = []
    for lo in range(0, len(correct), batch):
        part = None if scores is None else scores[lo : lo + batch]
        found += [
            (lo + c.index, c.stream, c.degraded)
            for c in watch.update(correct[lo : lo + batch], part)
        ]
    return found


def test_a_drop_is_a_degradation_and_the_recovery_a_rise() -> None:
    correct = stream(1, (20_000, 0.9), (20_000, 0.6), (20_000, 0.9))
    found = feed(DriftWatch(DriftConfig()), correct, 1000)
    degradations = [i for i, _, down in found if down]
    recoveries = [i for i, _, down in found if not down]
    assert degradations and 20_000 <= degradations[0] < 21_000
    assert recoveries and 40_000 <= recoveries[0] < 41_000
    assert all(i < 40_000 for i in degradations)


def test_a_stationary_stream_raises_nothing() -> None:
    assert feed(DriftWatch(DriftConfig()), stream(2, (200_000, 0.85)), 1000) == []


@pytest.mark.parametrize("batch", [1, 7, 100, 4096])
def test_changes_do_not_depend_on_batch_boundaries(batch: int) -> None:
    correct = stream(3, (5000, 0.95), (5000, 0.5), (3000, 0.95))
    assert feed(DriftWatch(DriftConfig()), correct, batch) == feed(
        DriftWatch(DriftConfig()), correct, len(correct)
    )


def test_a_restored_watch_continues_exactly() -> None:
    correct = stream(4, (8000, 0.9), (8000, 0.7), (8000, 0.9))
    whole = feed(DriftWatch(DriftConfig()), correct, 500)
    first = DriftWatch(DriftConfig())
    got = feed(first, correct[:12_000], 500)
    resumed = DriftWatch(DriftConfig(), pickle.loads(pickle.dumps(first.snapshot())))
    got += [(i + 12_000, s, d) for i, s, d in feed(resumed, correct[12_000:], 500)]
    assert got == whole and len(whole) >= 2


def test_a_changed_sensitivity_starts_the_detector_afresh() -> None:
    watch = DriftWatch(DriftConfig())
    watch.update(stream(5, (1000, 0.9)))
    restored = DriftWatch(DriftConfig(delta=0.01), watch.snapshot())
    assert restored.streams["correctness"].count == 0


def test_the_true_class_score_stream_skips_unscored_records() -> None:
    n = 20_000
    correct = np.ones(2 * n, dtype=bool)
    scores = np.concatenate([np.full(n, 0.9), np.full(n, 0.4)])
    scores[::2] = np.nan  # every other record sent a bare label
    found = feed(DriftWatch(DriftConfig()), correct, 999, scores)
    assert [(s, d) for _, s, d in found] == [("true_class_score", True)]
    assert n <= found[0][0] < n + 500
    assert feed(DriftWatch(DriftConfig(scores=False)), correct, 999, scores) == []


def test_off_watches_nothing() -> None:
    watch = DriftWatch(DriftConfig(detector="off"))
    assert feed(watch, stream(6, (5000, 0.9), (5000, 0.1)), 100) == []


def test_true_class_scores_pick_the_true_label_column() -> None:
    nan = np.nan
    labels = ["A", "B", "C"]
    keys = ["B", "A"]  # the score map's labels, in their own order
    scores = np.array([[0.3, 0.7], [nan, nan], [0.8, 0.2], [0.6, nan], [0.5, 0.5]])
    truth = np.array([0, 1, 1, 0, 2], dtype=np.int32)
    picked = true_class_scores(labels, truth, keys, scores)
    assert picked is not None
    # A -> 0.7; bare label -> NaN; B -> 0.8; A missing from the map -> 0; C never a key -> 0.
    np.testing.assert_array_equal(picked, [0.7, nan, 0.8, 0.0, 0.0])
    assert true_class_scores(labels, truth, [], None) is None


@pytest.mark.parametrize("fast", [True, False], ids=["rust-core", "public-update"])
@pytest.mark.parametrize("clock", [1, 5, 32])
def test_block_feeding_finds_what_a_per_record_loop_finds(
    clock: int, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector feeds River in blocks ending where ADWIN tests; a plain loop is the oracle."""
    from river.drift import ADWIN

    import flows.windows.drift

    monkeypatch.setattr(flows.windows.drift, "FAST_PATH", fast)
    for seed in range(8):
        correct = stream(seed, (3000, 0.9), (3000, 0.55), (3000, 0.95), (2000, 0.7))
        oracle, adwin = [], ADWIN(clock=clock)
        for i, value in enumerate(correct.astype(float).tolist()):
            adwin.update(value)
            if adwin.drift_detected:
                oracle.append(i)
        watch = DriftWatch(DriftConfig(clock=clock))
        got = feed(watch, correct, 333)
        assert [i for i, _, _ in got] == oracle and len(oracle) >= 2
        # and the detector's own state after the stream is River's
        ours = watch.streams["correctness"].adwin
        assert (ours.width, ours.total, ours.drift_detected) == (
            adwin.width,
            adwin.total,
            adwin.drift_detected,
        )


@pytest.mark.parametrize("cuts", [(1,), (7,), (333, 1500, 1), (4096,)])
def test_the_running_sum_does_not_depend_on_where_batches_are_cut(cuts: tuple[int, ...]) -> None:
    values = np.random.default_rng(5).random(10_000)
    whole = running_sum(0.0, values)
    total, lo, i = 0.0, 0, 0
    while lo < len(values):
        step = cuts[i % len(cuts)]
        total, lo, i = running_sum(total, values[lo : lo + step]), lo + step, i + 1
    assert total == whole  # bit for bit, not approximately
    assert whole == pytest.approx(float(values.sum()))
