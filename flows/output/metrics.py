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
from typing import TypedDict, cast

from flows.windows.pairs import Counts

# The one list of summary metric names, in document order: `Metrics`, the Elasticsearch mapping
# and the empty-window case follow it (a test checks `Metrics` against it).
METRIC_NAMES = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mcc", "kappa")


class ClassMetrics(TypedDict):
    """One-vs-rest counts and rates of one class; a rate with a zero denominator is None."""

    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    f1: float | None
    support: int


class Metrics(TypedDict):
    """The ``metrics`` object of a document: the `METRIC_NAMES`, then ``per_class``."""

    accuracy: float | None
    balanced_accuracy: float | None
    macro_f1: float | None
    weighted_f1: float | None
    mcc: float | None
    kappa: float | None
    per_class: dict[str, ClassMetrics]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def per_class(labels: Sequence[str], matrix: Counts) -> dict[str, ClassMetrics]:
    """One-vs-rest counts and rates for every class (row or column with a count)."""
    return _per_class(labels, matrix.tolist())


def _per_class(labels: Sequence[str], rows: list[list[int]]) -> dict[str, ClassMetrics]:
    support = [sum(row) for row in rows]
    predicted = [sum(col) for col in zip(*rows, strict=True)] if rows else []
    total = sum(support)
    out: dict[str, ClassMetrics] = {}
    for k, label in enumerate(labels):
        t, s, p = rows[k][k], support[k], predicted[k]
        if s == 0 and p == 0:
            continue
        fp, fn = p - t, s - t
        out[label] = {
            "tp": t,
            "fp": fp,
            "fn": fn,
            "tn": total - t - fp - fn,
            "precision": _ratio(t, p),
            "recall": _ratio(t, s),
            "f1": _ratio(2 * t, 2 * t + fp + fn),
            "support": s,
        }
    return out


def summary(matrix: Counts) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro/weighted F1, MCC and Cohen's kappa of ``matrix``."""
    return _summary(matrix.tolist())


def _summary(rows: list[list[int]]) -> dict[str, float | None]:
    # Plain Python on the counts: windows hold a handful of classes, where numpy's per-call
    # overhead costs more than the arithmetic.
    support_all = [sum(row) for row in rows]
    predicted_all = [sum(col) for col in zip(*rows, strict=True)] if rows else []
    present = [k for k in range(len(rows)) if support_all[k] or predicted_all[k]]
    n = sum(support_all)
    if n == 0:
        return dict.fromkeys(METRIC_NAMES)
    tp = [rows[k][k] for k in present]
    support = [support_all[k] for k in present]
    predicted = [predicted_all[k] for k in present]
    trace = sum(tp)
    f1 = [2 * t / (s + p) for t, s, p in zip(tp, support, predicted, strict=True)]
    recalls = [t / s for t, s in zip(tp, support, strict=True) if s]
    dot_sp = sum(s * p for s, p in zip(support, predicted, strict=True))

    # Multiclass MCC exactly as scikit-learn's matthews_corrcoef writes it.
    cov_ytyp = trace * n - dot_sp
    cov_ypyp = n * n - sum(p * p for p in predicted)
    cov_ytyt = n * n - sum(s * s for s in support)
    mcc = cov_ytyp / math.sqrt(cov_ytyt * cov_ypyp) if cov_ytyt * cov_ypyp else None

    # Cohen's kappa: 1 - observed disagreement / disagreement expected by chance.
    expected_disagreement = n - dot_sp / n
    kappa = 1 - (n - trace) / expected_disagreement if expected_disagreement else None

    return {
        "accuracy": trace / n,
        "balanced_accuracy": sum(recalls) / len(recalls),
        "macro_f1": sum(f1) / len(f1),
        "weighted_f1": sum(f * s for f, s in zip(f1, support, strict=True)) / n,
        "mcc": mcc,
        "kappa": kappa,
    }


def compute(labels: Sequence[str], matrix: Counts) -> Metrics:
    """The ``metrics`` object of an output document."""
    return of_rows(labels, matrix.tolist())


def of_rows(labels: Sequence[str], rows: list[list[int]]) -> Metrics:
    """`compute` of a matrix already turned into lists (the document holds them too).

    The lists are only read: the document shares them as its ``matrix``.
    """
    metrics = cast(Metrics, _summary(rows))
    metrics["per_class"] = _per_class(labels, rows)
    return metrics
