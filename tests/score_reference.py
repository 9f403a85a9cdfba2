"""The oracle of a document's ``scores`` object: scikit-learn on the raw records of a window.

Written from the README's definitions alone and sharing no code with ``flows``: each record is
``(true label, entry)`` where the entry is a score map or a bare predicted label (held by the
window but not scored). Scores are quantized by the documented rule
``min(floor(s * bins), bins - 1)`` after clipping into [0, 1]; a label missing from a map has
score 0. ROC-AUC and average precision come from scikit-learn on those bin indices, the Brier
score from scikit-learn's ``brier_score_loss`` on the raw scores (unscaled, multi-class), and the
rest (top-label ECE, the threshold table) from plain loops over the records. Slow and obvious.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

Entry = Mapping[str, float] | str
ScoredRecord = tuple[str, Entry]
TOLERANCE = 1e-9
SCORES_KEYS = frozenset(
    {
        "count",
        "bins",
        "out_of_range",
        "per_class",
        "macro_roc_auc",
        "macro_average_precision",
        "brier",
        "ece",
        "reliability",
        "thresholds",
    }
)


def quantize(score: float, bins: int) -> int:
    """The documented bin of a score."""
    clipped = min(max(score, 0.0), 1.0)
    return min(math.floor(clipped * bins), bins - 1)


def top_label(scores: Mapping[str, float]) -> str:
    """Arg-max of a score map; ties go to the label that sorts first."""
    best = max(scores.values())
    return sorted(label for label, s in scores.items() if s == best)[0]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def brier(
    truth: Sequence[str],
    maps: Sequence[Mapping[str, float]],
    classes: Sequence[str],
) -> float:
    """Unscaled multi-class Brier: scikit-learn's where it accepts the rows, else its formula.

    scikit-learn insists that rows sum to 1 and that there are two classes; its documented
    formula ``mean_i sum_c (y_ic - p_ic)**2`` is used for windows it refuses.
    """
    proba = np.array([[m.get(c, 0.0) for c in classes] for m in maps], dtype=np.float64)
    if len(classes) >= 2 and np.allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12):
        return float(
            brier_score_loss(list(truth), proba, labels=list(classes), scale_by_half=False)
        )
    onehot = np.array([[1.0 if t == c else 0.0 for c in classes] for t in truth])
    return float(np.mean(np.sum((onehot - proba) ** 2, axis=1)))


def threshold_rows(
    truth: Sequence[str], maps: Sequence[Mapping[str, float]], positive: str, bins: int
) -> dict[str, Any]:
    """Counts of "bin of the positive score >= j" at every bin edge j, as ratios."""
    qs = [quantize(m.get(positive, 0.0), bins) for m in maps]
    ys = [t == positive for t in truth]
    table: dict[str, Any] = {
        "positive": positive,
        "threshold": [],
        "precision": [],
        "recall": [],
        "f1": [],
        "fpr": [],
    }
    for j in range(bins):
        tp = sum(1 for q, y in zip(qs, ys, strict=True) if q >= j and y)
        fp = sum(1 for q, y in zip(qs, ys, strict=True) if q >= j and not y)
        fn = sum(1 for q, y in zip(qs, ys, strict=True) if q < j and y)
        tn = sum(1 for q, y in zip(qs, ys, strict=True) if q < j and not y)
        table["threshold"].append(j / bins)
        table["precision"].append(_ratio(tp, tp + fp))
        table["recall"].append(_ratio(tp, tp + fn))
        table["f1"].append(_ratio(2 * tp, 2 * tp + fp + fn))
        table["fpr"].append(_ratio(fp, fp + tn))
    return table


def expected_scores(window: Sequence[ScoredRecord], bins: int) -> dict[str, Any] | None:
    """The ``scores`` object of a window holding ``window`` (oldest first)."""
    scored = [(t, e) for t, e in window if isinstance(e, Mapping)]
    if not scored:
        return None
    truth = [t for t, _ in scored]
    maps: list[Mapping[str, float]] = [e for _, e in scored]  # type: ignore[misc]
    classes = sorted(set(truth) | {k for m in maps for k in m})
    per_class: dict[str, Any] = {}
    for c in classes:
        y = [t == c for t in truth]
        q = [quantize(m.get(c, 0.0), bins) for m in maps]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auc = float(roc_auc_score(y, q)) if any(y) and not all(y) else None
            ap = float(average_precision_score(y, q)) if any(y) else None
        per_class[c] = {"roc_auc": auc, "average_precision": ap, "support": sum(y)}
    as_truth = [c for c in classes if per_class[c]["support"]]
    macro = len(as_truth) >= 2
    outside = sum(1 for m in maps if any(s < 0.0 or s > 1.0 for s in m.values()))
    result: dict[str, Any] = {
        "count": len(scored),
        "bins": bins,
        "out_of_range": outside,
        "per_class": per_class,
        "macro_roc_auc": (
            float(np.mean([per_class[c]["roc_auc"] for c in as_truth])) if macro else None
        ),
        "macro_average_precision": (
            float(np.mean([per_class[c]["average_precision"] for c in as_truth])) if macro else None
        ),
        "brier": None,
        "ece": None,
        "reliability": None,
        "thresholds": None,
    }
    if outside == 0:
        result["brier"] = brier(truth, maps, classes)
        groups: dict[int, list[tuple[float, bool]]] = {}
        for t, m in scored:
            conf = max(m.values())  # type: ignore[union-attr]
            groups.setdefault(quantize(conf, bins), []).append((conf, top_label(m) == t))
        rel: dict[str, list[Any]] = {"lower": [], "count": [], "confidence": [], "accuracy": []}
        ece = 0.0
        for b in sorted(groups):
            confs = [c for c, _ in groups[b]]
            acc = sum(ok for _, ok in groups[b]) / len(confs)
            mean_conf = float(np.mean(confs))
            ece += len(confs) / len(scored) * abs(acc - mean_conf)
            rel["lower"].append(b / bins)
            rel["count"].append(len(confs))
            rel["confidence"].append(mean_conf)
            rel["accuracy"].append(acc)
        result["ece"] = ece
        result["reliability"] = rel
    if len(classes) == 2:
        result["thresholds"] = threshold_rows(truth, maps, classes[1], bins)
    return result


def score_diffs(actual: Any, expected: Any, path: str = "scores") -> list[tuple[str, float]]:
    """Every numeric difference between two ``scores`` objects, with where it is.

    Structure (keys, lengths, None/not None, strings, integers) must match exactly; floats are
    returned as (path, difference): relative for the Brier score, absolute otherwise.
    """
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (path, actual, expected)
        return [d for k in expected for d in score_diffs(actual[k], expected[k], f"{path}.{k}")]
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (path, actual, expected)
        return [
            d
            for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for d in score_diffs(a, e, f"{path}[{i}]")
        ]
    if expected is None or isinstance(expected, (str, bool, int)):
        assert actual == expected and type(actual) is type(expected), (path, actual, expected)
        return []
    assert isinstance(actual, float) and math.isfinite(actual), (path, actual)
    diff = abs(actual - expected)
    if path.endswith(".brier") and expected:
        diff /= abs(expected)
    return [(path, diff)]


def assert_scores_equal(actual: Any, expected: Any, tolerance: float = TOLERANCE) -> float:
    """Assert two ``scores`` objects agree to ``tolerance``; return the largest difference."""
    diffs = score_diffs(actual, expected)
    worst = max((d for _, d in diffs), default=0.0)
    assert worst <= tolerance, [d for d in diffs if d[1] > tolerance][:5]
    return worst


def ensemble_scores(
    weights: Mapping[str, float],
    votes: Sequence[tuple[str, str, Mapping[str, float] | None]],
) -> dict[str, float] | None:
    """The ensemble's score map (README): members' weighted sums (a bare label scores 1),
    divided by their total; none when the total is not a positive finite number."""
    totals: dict[str, float] = {}
    for model, label, scores in votes:
        if model in weights:
            for name, score in (scores or {label: 1.0}).items():
                totals[name] = totals.get(name, 0.0) + weights[model] * score
    whole = sum(totals.values())
    if not totals or not 0.0 < whole < math.inf:
        return None
    return {name: total / whole for name, total in totals.items()}
