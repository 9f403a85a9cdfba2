"""Ranking and calibration metrics of a window's score statistics, as a document's ``scores``.

Everything is computed from the counts of a `ScoreView`, so it is exact up to one rounding:

- ROC-AUC of class k against the rest is scikit-learn's ``roc_auc_score`` on the bin indices:
  the probability that a positive outranks a negative, ties counting one half (the trapezoid
  under the ROC curve), from integer counts and one division.
- Average precision is scikit-learn's ``average_precision_score`` on the bin indices: the sum,
  over bins holding positives (highest first), of the recall gained times the precision there.
- Brier is the multi-class score ``mean over records of sum_k (s_k - y_k)**2`` on the raw scores
  (a missing key scores 0), i.e. scikit-learn's ``brier_score_loss(..., scale_by_half=False)``,
  which for two classes is twice the binary Brier score.
- Top-label ECE: records are binned by their top score; ``sum_b n_b / n * |acc_b - conf_b|``.

Undefined values are None (JSON null), never NaN: ROC-AUC without positives or without negatives,
average precision without positives, macro averages with fewer than two classes present as
truth, calibration (Brier, ECE, reliability) while the window holds a score outside [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from flows.windows.scores import BRIER_UNIT, CONF_ONE, Floats, Ints, ScoreView


def _nulls(values: Floats, defined: NDArray[np.bool_]) -> list[float | None]:
    return [v if ok else None for v, ok in zip(values.tolist(), defined.tolist(), strict=True)]


def ranking(positives: Ints, negatives: Ints) -> tuple[list[float | None], list[float | None]]:
    """ROC-AUC and average precision of every class (rows of (classes, bins) histograms)."""
    auc, ap, auc_defined, ap_defined = _ranked(positives, negatives)
    return _nulls(auc, auc_defined), _nulls(ap, ap_defined)


def _ranked(
    positives: Ints, negatives: Ints
) -> tuple[Floats, Floats, NDArray[np.bool_], NDArray[np.bool_]]:
    """ROC-AUC and average precision of each row, and where each is defined.

    ROC-AUC is ``sum_b neg_b * (2 * pos_above_b + pos_b) / (2 * P * N)``: integers up to the
    division, exact below 2**53 (any window of up to 10**7 records per class pair). Average
    precision adds, from the top bin down, each bin's share of positives times the precision at
    that bin's threshold. Rows are independent, so many views' classes go in one call.
    """
    n_pos, n_neg = positives.sum(axis=1), negatives.sum(axis=1)
    down_pos = np.cumsum(positives[:, ::-1], axis=1)
    down_neg = np.cumsum(negatives[:, ::-1], axis=1)
    above = down_pos[:, ::-1] - positives
    twice = (negatives * (2 * above + positives)).sum(axis=1)
    auc = twice / np.maximum(2 * n_pos * n_neg, 1)
    precision = down_pos / np.maximum(down_pos + down_neg, 1)
    ap = (positives[:, ::-1] * precision).sum(axis=1) / np.maximum(n_pos, 1)
    return auc, ap, (n_pos > 0) & (n_neg > 0), n_pos > 0


def _view_ranking(view: ScoreView, order: list[int]) -> tuple[list[float | None], ...]:
    """`ranking` of the classes ``order`` of a view; once for all views of its stack."""
    stack = view.stack
    if stack is None:
        return ranking(view.positives[order], view.negatives[order])
    ranked = stack.cache.get("ranked")
    if ranked is None:
        n_views, n_classes, bins = stack.positives.shape
        auc, ap, auc_defined, ap_defined = _ranked(
            stack.positives.reshape(-1, bins), stack.negatives.reshape(-1, bins)
        )
        ranked = [
            [row[k : k + n_classes] for k in range(0, n_views * n_classes, n_classes)]
            for row in (_nulls(auc, auc_defined), _nulls(ap, ap_defined))
        ]
        stack.cache["ranked"] = ranked
    auc_row, ap_row = ranked[0][view.row], ranked[1][view.row]
    return [auc_row[k] for k in order], [ap_row[k] for k in order]


def roc_auc(positives: Ints, negatives: Ints) -> float | None:
    """ROC-AUC of one class from per-bin counts (bins ascending); None with one class only."""
    return ranking(positives[None, :], negatives[None, :])[0][0]


def average_precision(positives: Ints, negatives: Ints) -> float | None:
    """Average precision of one class from per-bin counts; None without positives."""
    return ranking(positives[None, :], negatives[None, :])[1][0]


def _defined_prefix(values: Floats, den: Ints) -> list[float | None]:
    """``values`` where ``den`` is non-zero; the zeros of a non-increasing ``den`` are a tail."""
    defined = int(np.count_nonzero(den))
    head: list[float | None] = values[:defined].tolist()
    return head + [None] * (len(values) - defined)


def threshold_table(positive: str, positives: Ints, negatives: Ints) -> dict[str, Any]:
    """Precision, recall, F1 and false-positive rate of "score >= threshold", at every bin edge.

    Row j predicts ``positive`` for records whose score falls in bin j or above, i.e. whose score
    is at least ``j / bins``. Counts only shrink as j grows, so undefined rows form the tail.
    """
    bins = len(positives)
    tp = np.cumsum(positives[::-1])[::-1]
    fp = np.cumsum(negatives[::-1])[::-1]
    n_pos, n_neg = int(positives.sum()), int(negatives.sum())
    predicted = tp + fp
    f1_den = predicted + n_pos  # 2 tp + fp + fn
    return {
        "positive": positive,
        "threshold": (np.arange(bins) / bins).tolist(),
        "precision": _defined_prefix(tp / np.maximum(predicted, 1), predicted),
        "recall": (tp / n_pos).tolist() if n_pos else [None] * bins,
        "f1": _defined_prefix(2 * tp / np.maximum(f1_den, 1), f1_den),
        "fpr": (fp / n_neg).tolist() if n_neg else [None] * bins,
    }


def reliability(view: ScoreView) -> tuple[float, dict[str, list[Any]]]:
    """Top-label ECE and the non-empty reliability bins (lower edge, count, confidence, accuracy).

    Sums are integers (confidences in units of 2**-31) below 2**53, so every division is one
    correctly rounded step. Views of one stack share the work, done for all of them at once.
    """
    stack, row = view.stack, view.row
    if stack is None:
        rows = _reliability_rows(
            view.rel_count[None, :], view.rel_correct[None, :], view.rel_conf[None, :], view.bins
        )
        row = 0
    else:
        cached: list[_BinRow] | None = stack.cache.get("reliability")
        if cached is None:
            cached = _reliability_rows(
                stack.rel_count, stack.rel_correct, stack.rel_conf, view.bins
            )
            stack.cache["reliability"] = cached
        rows = cached
    gap, lower, count, confidence, accuracy = rows[row]
    return gap / (view.scored * CONF_ONE), {
        "lower": lower,
        "count": count,
        "confidence": confidence,
        "accuracy": accuracy,
    }


_BinRow = tuple[int, list[float], list[int], list[float], list[float]]


def _reliability_rows(count: Ints, correct: Ints, conf: Ints, bins: int) -> list[_BinRow]:
    """Per row of (views, bins) sums: the ECE numerator (units of 2**-31) and, for the bins
    holding records, lower edge, count, mean confidence and accuracy (fresh lists per row)."""
    gaps: list[int] = np.abs(correct * CONF_ONE - conf).sum(axis=1).tolist()
    held = count > 0
    n = count[held]
    lower: list[float] = (np.nonzero(held)[1] / bins).tolist()
    counts: list[int] = n.tolist()
    confidence: list[float] = (conf[held] / (n * CONF_ONE)).tolist()
    accuracy: list[float] = (correct[held] / n).tolist()
    ends: list[int] = np.cumsum(held.sum(axis=1)).tolist()
    return [
        (gap, lower[lo:hi], counts[lo:hi], confidence[lo:hi], accuracy[lo:hi])
        for gap, lo, hi in zip(gaps, [0, *ends[:-1]], ends, strict=True)
    ]


SCORE_METRIC_NAMES = ("macro_roc_auc", "macro_average_precision", "brier", "ece")


def _mean(values: list[float | None]) -> float:
    return sum(v for v in values if v is not None) / len(values)


def compute(view: ScoreView) -> dict[str, Any] | None:
    """The ``scores`` object of a document; None when the window holds no scored record."""
    if view.scored == 0:
        return None
    order = sorted(np.flatnonzero(view.present).tolist(), key=view.classes.__getitem__)
    support = view.truth_counts[order]
    auc, ap = _view_ranking(view, order)
    per_class = {
        view.classes[k]: {"roc_auc": a, "average_precision": p, "support": s}
        for k, a, p, s in zip(order, auc, ap, support.tolist(), strict=True)
    }
    # Two or more classes present as truth: each has positives and negatives, so none is None.
    as_truth = [i for i, s in enumerate(support.tolist()) if s]
    macro = len(as_truth) >= 2
    calibrated = view.out_of_range == 0
    ece, bins = reliability(view) if calibrated else (None, None)
    thresholds = None
    if len(order) == 2:
        k = order[1]  # as scikit-learn: the positive class is the greater label
        thresholds = threshold_table(view.classes[k], view.positives[k], view.negatives[k])
    return {
        "count": view.scored,
        "bins": view.bins,
        "out_of_range": view.out_of_range,
        "per_class": per_class,
        "macro_roc_auc": _mean([auc[i] for i in as_truth]) if macro else None,
        "macro_average_precision": _mean([ap[i] for i in as_truth]) if macro else None,
        "brier": view.brier_sum / (view.scored << BRIER_UNIT) if calibrated else None,
        "ece": ece,
        "reliability": bins,
        "thresholds": thresholds,
    }
