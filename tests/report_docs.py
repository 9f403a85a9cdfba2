"""Synthetic window and alert documents, and running the report, for its tests and benchmark.

Matrices are random but the metrics are the job's own (`flows.output.metrics.compute`), so a document
has exactly the shape the job writes. The optional parts follow the issue texts of the parallel
capabilities: a ``scores`` object (issue 13: per-class ROC-AUC/AP, macro averages, Brier, ECE
with reliability bins, a threshold table for two-class models), the ``join`` block of delayed
labels (issue 12: seen, joined, expired, waiting, ``latency_ms``), and alert documents (issue
14), each shaped as those branches write them (tables inside ``scores`` are objects of columns).
Their values are plausible, not computed: the report draws them, it does not check them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flows.output.documents import iso_ms
from flows.output.metrics import compute

ROOT = Path(__file__).resolve().parents[1]
START_MS = 1_795_341_600_000  # 2026-11-22T10:00:00Z
STEP_MS = 50
Doc = dict[str, Any]


def class_names(n: int) -> list[str]:
    if n <= 3:
        return ["A", "B", "C"][:n]
    return [f"class-{i:02d}" for i in range(n)]


def _matrix(rng: np.random.Generator, k: int, size: int, skill: float) -> np.ndarray[Any, Any]:
    truth = rng.integers(0, k, size)
    right = rng.random(size) < skill
    pred = np.where(right, truth, (truth + rng.integers(1, max(k, 2), size)) % k)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (truth, pred), 1)
    return matrix


def _scores(rng: np.random.Generator, labels: list[str], skill: float, count: int) -> Doc:
    auc = {label: float(np.clip(skill + rng.normal(0, 0.02), 0.5, 1)) for label in labels}
    ap = {label: float(np.clip(auc[label] - 0.05 + rng.normal(0, 0.02), 0, 1)) for label in labels}
    bins = []
    for b in range(10):
        conf = (b + 0.5) / 10
        bins.append(
            {
                "lower": b / 10,
                "count": int(rng.integers(0, 200)) if b >= 3 else 0,
                "mean_confidence": conf,
                "accuracy": float(np.clip(conf * skill + rng.normal(0, 0.03), 0, 1)),
            }
        )
    scores: Doc = {
        "count": count,
        "per_class": {
            label: {"roc_auc": auc[label], "average_precision": ap[label]} for label in labels
        },
        "macro_roc_auc": float(np.mean(list(auc.values()))),
        "macro_average_precision": float(np.mean(list(ap.values()))),
        "brier": float(np.clip(1 - skill + rng.normal(0, 0.01), 0, 2)),
        "ece": float(np.clip((1 - skill) / 3 + rng.normal(0, 0.005), 0, 1)),
        # Tables are columns, as the job writes them: one list per field.
        "reliability": {
            key: [b[src] for b in bins if b["count"]]
            for key, src in (
                ("lower", "lower"),
                ("count", "count"),
                ("confidence", "mean_confidence"),
                ("accuracy", "accuracy"),
            )
        },
        "thresholds": None,
    }
    if len(labels) == 2:
        table: dict[str, Any] = {
            "positive": labels[1],
            "threshold": [],
            "precision": [],
            "recall": [],
            "f1": [],
            "fpr": [],
        }
        for i in range(100):
            t = i / 100
            recall = float(1 - t ** (1 + 3 * skill))
            fpr = float((1 - t) ** (1 + 6 * skill))
            precision = recall / (recall + fpr) if recall + fpr else None
            f1 = (
                2 * precision * recall / (precision + recall)
                if precision is not None and precision + recall
                else None
            )
            for key, value in (
                ("threshold", t),
                ("precision", precision),
                ("recall", recall),
                ("f1", f1),
                ("fpr", fpr),
            ):
                table[key].append(value)
        scores["thresholds"] = table
    return scores


def window_docs(
    model: str,
    n_docs: int,
    *,
    classes: int = 3,
    window: int = 1000,
    emit_every: int = 100,
    seed: int = 0,
    drift_at: float | None = None,
    scores: bool = False,
    labels_join: bool = False,
) -> Iterator[Doc]:
    """``n_docs`` documents of ``model``, as the job would emit them every ``emit_every``."""
    rng = np.random.default_rng(seed)
    labels = class_names(classes)
    for i in range(1, n_docs + 1):
        seq = i * emit_every
        count = min(seq, window)
        skill = 0.92 if drift_at is None or i < drift_at * n_docs else 0.62
        matrix = _matrix(rng, classes, count, skill)
        end = START_MS + seq * STEP_MS
        doc: Doc = {
            "model": model,
            "window": {
                "kind": "count",
                "size": window,
                "count": count,
                "full": count == window,
                "first_id": f"r-{seq - count + 1:07d}",
                "last_id": f"r-{seq:07d}",
                "start": iso_ms(end - (count - 1) * STEP_MS),
                "end": iso_ms(end),
            },
            "labels": labels,
            "matrix": matrix.tolist(),
            "metrics": compute(labels, matrix),
            "seq": seq,
            "emitted_at": iso_ms(end + 20),
        }
        if scores:
            doc["scores"] = _scores(rng, labels, skill, count)
        if labels_join:
            joined = int(seq * 0.9)
            doc["join"] = {  # issue 12's join block: running totals, latency since last doc
                "seen": seq,
                "joined": joined,
                "expired": int(seq * 0.03),
                "waiting": seq - joined - int(seq * 0.03),
                "latency_ms": {
                    "count": emit_every,
                    "p50": int(60_000 + rng.normal(0, 5000)),
                    "p95": int(300_000 + rng.normal(0, 20000)),
                    "max": int(900_000 + rng.normal(0, 50000)),
                },
            }
        yield doc


def alert_doc(
    model: str,
    seq: int,
    *,
    state: str = "fired",
    source: str = "rule",
    name: str = "accuracy < 0.8",
    metric: str = "accuracy",
    value: float = 0.62,
    baseline: float | None = 0.92,
    window: int = 1000,
    fired_seq: int | None = None,
) -> Doc:
    """An alert transition as issue 14's job writes it (``status`` fired or resolved)."""
    end = START_MS + seq * STEP_MS
    fired_seq = seq if fired_seq is None else fired_seq
    alert_id = f"{model}/{name}/{fired_seq}"
    return {
        "id": f"{alert_id}/{state}",
        "alert_id": alert_id,
        "status": state,
        "model": model,
        "source": source,
        "name": name,
        "metric": metric,
        "value": value,
        "threshold": None,
        "limit": None,
        "baseline": baseline,
        "baseline_seq": 1000,
        "baseline_source": "first_full_window",
        "detector": name if source == "detector" else None,
        "window": {
            "kind": "count",
            "size": window,
            "count": window,
            "full": True,
            "first_id": f"r-{seq - window + 1:07d}",
            "last_id": f"r-{seq:07d}",
            "start": iso_ms(end - (window - 1) * STEP_MS),
            "end": iso_ms(end),
        },
        "seq": seq,
        "fired_seq": fired_seq,
        "fired_at": iso_ms(START_MS + fired_seq * STEP_MS),
        "at": iso_ms(end + 30),
        "emitted_at": iso_ms(end + 40),
        "reason": None,
    }


def rich_documents() -> list[Doc]:
    """Every optional part at once: what the full-featured page must draw.

    ``binary`` (2 classes, scores: ROC/PR curves), ``wide`` (20 classes, scores, delayed
    labels), ``plain`` (nothing optional), and alerts on ``binary`` and ``wide``.
    """
    docs: list[Doc] = []
    docs += window_docs("binary", 120, classes=2, seed=1, drift_at=0.6, scores=True)
    docs += window_docs("wide", 80, classes=20, seed=2, scores=True, labels_join=True, drift_at=0.5)
    docs += window_docs("plain", 60, classes=3, seed=3)
    docs.append(alert_doc("binary", 7300))
    docs.append(
        alert_doc(
            "binary",
            7400,
            source="detector",
            name="ADWIN",
            metric="correct",
            value=0.6,
            baseline=None,
        )
    )
    docs.append(alert_doc("binary", 10500, state="resolved", value=0.85, fired_seq=7300))
    docs.append(
        alert_doc(
            "wide", 4100, name="macro_f1 drop 0.1", metric="macro_f1", value=0.55, baseline=0.9
        )
    )
    return docs


# ------------------------------------------------------------------ running the report


def run_report(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.tools.report", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def write_jsonl(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


def page_charts(html: Path) -> dict[str, Any]:
    """The chart specs and data embedded in a report page."""
    text = html.read_text(encoding="utf-8")
    match = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S
    )
    assert match, "no chart data in the page"
    charts: dict[str, Any] = json.loads(match.group(1))
    return charts
