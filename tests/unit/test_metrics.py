"""`flows.output.metrics.compute` equals scikit-learn on every window, with null (never NaN)
where the contract says so."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.output import metrics
from tests.reference import (
    diff_values,
    exact_metrics,
    matrix_of,
    none_not_nan,
    window_metrics,
)

LABELS = ["a", "b", "c", "d", "Ω", "10", "7"]


def flow_metrics(
    truth: Sequence[str], pred: Sequence[str], earlier: Sequence[str] = ()
) -> dict[str, Any]:
    """What the job computes for this window, its matrix also holding labels seen earlier."""
    labels = sorted(set(truth) | set(pred) | set(earlier))
    matrix = np.array(matrix_of(labels, truth, pred), dtype=np.int64).reshape(
        len(labels), len(labels)
    )
    return metrics.compute(labels, matrix)


def assert_same_metrics(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    diffs: list[str] = []
    diff_values("metrics", actual, expected, diffs)
    assert not diffs, "\n".join(diffs)
    assert none_not_nan(actual) == []


windows = st.lists(
    st.tuples(st.sampled_from(LABELS), st.sampled_from(LABELS)), min_size=1, max_size=80
)
skewed_windows = st.lists(
    st.tuples(st.sampled_from(LABELS[:2]), st.sampled_from(LABELS)), min_size=1, max_size=30
)


@given(
    pairs=st.one_of(windows, skewed_windows),
    earlier=st.lists(st.sampled_from([*LABELS, "zzz", "ancient"]), max_size=4),
)
def test_metrics_equal_scikit_learn(pairs: list[tuple[str, str]], earlier: list[str]) -> None:
    truth = [t for t, _ in pairs]
    pred = [p for _, p in pairs]
    assert_same_metrics(flow_metrics(truth, pred, earlier), window_metrics(truth, pred))


@given(counts=st.lists(st.integers(0, 10**9), min_size=9, max_size=9).filter(any))
def test_metrics_of_huge_counts_equal_exact_arithmetic(counts: list[int]) -> None:
    """Counts near a billion per cell: float shortcuts must still be good to 1e-9."""
    labels = ["x", "y", "z"]
    matrix = np.array(counts, dtype=np.int64).reshape(3, 3)
    pairs = {(labels[i], labels[j]): counts[3 * i + j] for i in range(3) for j in range(3)}
    assert_same_metrics(metrics.compute(labels, matrix), exact_metrics(pairs))


def test_one_class_window_has_null_mcc_and_kappa() -> None:
    result = flow_metrics(["a"] * 5, ["a"] * 5)
    assert result["mcc"] is None
    assert result["kappa"] is None
    assert result["accuracy"] == result["balanced_accuracy"] == result["macro_f1"] == 1.0
    assert result["per_class"] == {
        "a": {
            "tp": 5,
            "fp": 0,
            "fn": 0,
            "tn": 0,
            "precision": 1.0,
            "recall": 1.0,
            "f1": 1.0,
            "support": 5,
        }
    }
    assert_same_metrics(result, window_metrics(["a"] * 5, ["a"] * 5))


def test_class_only_predicted_has_null_recall_and_zero_precision() -> None:
    truth, pred = ["a", "a", "a", "a"], ["a", "b", "a", "b"]
    result = flow_metrics(truth, pred)
    assert result["per_class"]["b"] == {
        "tp": 0,
        "fp": 2,
        "fn": 0,
        "tn": 2,
        "precision": 0.0,
        "recall": None,
        "f1": 0.0,
        "support": 0,
    }
    assert result["mcc"] is None  # one class in truth: MCC's denominator is zero
    assert result["kappa"] == pytest.approx(0.0)
    assert result["balanced_accuracy"] == 0.5  # classes absent from truth are left out
    assert_same_metrics(result, window_metrics(truth, pred))


def test_class_never_predicted_has_null_precision() -> None:
    truth, pred = ["a", "b", "b"], ["a", "a", "a"]
    result = flow_metrics(truth, pred)
    assert result["per_class"]["b"]["precision"] is None
    assert result["per_class"]["b"]["recall"] == 0.0
    assert result["mcc"] is None  # one class in predictions
    assert_same_metrics(result, window_metrics(truth, pred))


def test_label_seen_earlier_but_absent_from_window_is_not_a_class() -> None:
    truth, pred = ["a", "b", "a"], ["a", "a", "b"]
    with_absent = flow_metrics(truth, pred, earlier=["0-first", "z-last"])
    assert set(with_absent["per_class"]) == {"a", "b"}
    assert with_absent == flow_metrics(truth, pred)
    assert_same_metrics(with_absent, window_metrics(truth, pred))


def test_every_zero_denominator_is_null_never_nan() -> None:
    """Each (truth, prediction) pattern whose denominators can vanish, all at once."""
    cases = [(["a"], ["a"]), (["a"], ["b"]), (["a", "a"], ["b", "c"]), (["a", "b"], ["c", "c"])]
    for truth, pred in cases:
        result = flow_metrics(truth, pred)
        assert none_not_nan(result) == [], (truth, pred)
        assert_same_metrics(result, window_metrics(truth, pred))


def test_per_class_counts_add_up() -> None:
    truth = ["a", "b", "c", "a", "b", "c", "c"]
    pred = ["a", "c", "c", "b", "b", "a", "c"]
    result = flow_metrics(truth, pred)
    support = Counter(truth)
    for label, values in result["per_class"].items():
        assert values["tp"] + values["fp"] + values["fn"] + values["tn"] == len(truth)
        assert values["support"] == support[label]
