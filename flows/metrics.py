"""Classification metrics of one confusion matrix, as scikit-learn defines them.

The classes are the labels that occur in the window as truth or prediction (scikit-learn's
``unique_labels(y_true, y_pred)``); rows and columns of labels seen only earlier are ignored.
One-vs-rest counts follow scikit-learn, not River: for class k, TP = C[k,k], FN = row k - TP,
FP = column k - TP, TN = total - TP - FN - FP. The averages use ``zero_division=0`` as
scikit-learn does; a per-class value, MCC or kappa whose denominator is zero is None (JSON null),
never NaN, so a dashboard shows a gap rather than a misleading 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from flows.windows import Counts


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def per_class(labels: Sequence[str], matrix: Counts) -> dict[str, dict[str, Any]]:
    """One-vs-rest counts and rates for every class (row or column with a count)."""
    tp = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    total = int(support.sum())
    out: dict[str, dict[str, Any]] = {}
    for k, label in enumerate(labels):
        t, s, p = int(tp[k]), int(support[k]), int(predicted[k])
        if s == 0 and p == 0:
            continue
        fp, fn = p - t, s - t
        out[label] = {"tp": t, "fp": fp, "fn": fn, "tn": total - t - fp - fn,
                      "precision": _ratio(t, p), "recall": _ratio(t, s),
                      "f1": _ratio(2 * t, 2 * t + fp + fn), "support": s}
    return out


def summary(matrix: Counts) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro/weighted F1, MCC and Cohen's kappa of ``matrix``."""
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    c = matrix[np.ix_(present, present)].astype(np.int64)
    n = int(c.sum())
    if n == 0:
        return {"accuracy": None, "balanced_accuracy": None, "macro_f1": None,
                "weighted_f1": None, "mcc": None, "kappa": None}
    tp = np.diag(c).astype(np.float64)
    support = c.sum(axis=1).astype(np.float64)
    predicted = c.sum(axis=0).astype(np.float64)
    trace = float(tp.sum())

    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
        recall = tp[support > 0] / support[support > 0]

    # Multiclass MCC exactly as scikit-learn's matthews_corrcoef writes it.
    cov_ytyp = trace * n - float(support @ predicted)
    cov_ypyp = float(n) * n - float(predicted @ predicted)
    cov_ytyt = float(n) * n - float(support @ support)
    mcc = cov_ytyp / math.sqrt(cov_ytyt * cov_ypyp) if cov_ytyt * cov_ypyp else None

    # Cohen's kappa: 1 - observed disagreement / disagreement expected by chance.
    expected_disagreement = n - float(predicted @ support) / n
    kappa = 1 - (n - trace) / expected_disagreement if expected_disagreement else None

    return {"accuracy": trace / n,
            "balanced_accuracy": float(recall.mean()),
            "macro_f1": float(f1.mean()),
            "weighted_f1": float((f1 * support).sum() / n),
            "mcc": mcc, "kappa": kappa}


def compute(labels: Sequence[str], matrix: Counts) -> dict[str, Any]:
    """The ``metrics`` object of an output document."""
    metrics: dict[str, Any] = dict(summary(matrix))
    metrics["per_class"] = per_class(labels, matrix)
    return metrics
