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

from flows.score_window import BRIER_UNIT, CONF_ONE, Ints, ScoreView


def roc_auc(positives: Ints, negatives: Ints) -> float | None:
    """ROC-AUC from per-bin counts (bins ascending); None with one class only."""
    n_pos, n_neg = int(positives.sum()), int(negatives.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    above = np.cumsum(positives[::-1])[::-1] - positives  # positives in higher bins
    twice = int((negatives * (2 * above + positives)).sum())
    return twice / (2 * n_pos * n_neg)


def average_precision(positives: Ints, negatives: Ints) -> float | None:
    """Average precision from per-bin counts (bins ascending); None without positives."""
    n_pos = int(positives.sum())
    if n_pos == 0:
        return None
    tp = np.cumsum(positives[::-1])
    fp = np.cumsum(negatives[::-1])
    gain = positives[::-1]
    hit = gain > 0
    return float((gain[hit] * (tp[hit] / (tp[hit] + fp[hit]))).sum() / n_pos)


def _ratios(num: Ints, den: Ints) -> list[float | None]:
    return [n / d if d else None for n, d in zip(num.tolist(), den.tolist(), strict=True)]


def threshold_table(positive: str, positives: Ints, negatives: Ints) -> dict[str, Any]:
    """Precision, recall, F1 and false-positive rate of "score >= threshold", at every bin edge.

    Row j predicts ``positive`` for records whose score falls in bin j or above, i.e. whose score
    is at least ``j / bins``.
    """
    bins = len(positives)
    tp = np.cumsum(positives[::-1])[::-1]
    fp = np.cumsum(negatives[::-1])[::-1]
    n_pos = np.full(bins, int(positives.sum()))
    n_neg = np.full(bins, int(negatives.sum()))
    fn = n_pos - tp
    return {"positive": positive,
            "threshold": [j / bins for j in range(bins)],
            "precision": _ratios(tp, tp + fp),
            "recall": _ratios(tp, n_pos),
            "f1": _ratios(2 * tp, 2 * tp + fp + fn),
            "fpr": _ratios(fp, n_neg)}


def reliability(view: ScoreView) -> tuple[float, dict[str, list[Any]]]:
    """Top-label ECE and the non-empty reliability bins (lower edge, count, confidence, hits)."""
    count, correct, conf = view.rel_count, view.rel_correct, view.rel_conf
    gap = int(np.abs(correct * CONF_ONE - conf).sum())
    ece = gap / (view.scored * CONF_ONE)
    held = np.flatnonzero(count)
    n = count[held].tolist()
    return ece, {"lower": [b / view.bins for b in held.tolist()],
                 "count": n,
                 "confidence": [c / (k * CONF_ONE) for c, k in zip(conf[held].tolist(), n,
                                                                  strict=True)],
                 "accuracy": [c / k for c, k in zip(correct[held].tolist(), n, strict=True)]}


def compute(view: ScoreView) -> dict[str, Any] | None:
    """The ``scores`` object of a document; None when the window holds no scored record."""
    if view.scored == 0:
        return None
    order = sorted(np.flatnonzero(view.present).tolist(), key=view.classes.__getitem__)
    per_class: dict[str, dict[str, Any]] = {}
    auc: list[float] = []
    ap: list[float] = []
    for k in order:
        pos, neg = view.positives[k], view.negatives[k]
        class_auc, class_ap = roc_auc(pos, neg), average_precision(pos, neg)
        per_class[view.classes[k]] = {"roc_auc": class_auc, "average_precision": class_ap,
                                      "support": int(view.truth_counts[k])}
        if class_auc is not None and class_ap is not None and view.truth_counts[k]:
            auc.append(class_auc)
            ap.append(class_ap)
    # Two or more classes present as truth: each has positives and negatives, so none is None.
    macro = int((view.truth_counts[view.present] > 0).sum()) >= 2
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
        "macro_roc_auc": sum(auc) / len(auc) if macro else None,
        "macro_average_precision": sum(ap) / len(ap) if macro else None,
        "brier": view.brier_sum / (view.scored << BRIER_UNIT) if calibrated else None,
        "ece": ece,
        "reliability": bins,
        "thresholds": thresholds,
    }
