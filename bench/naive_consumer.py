"""The naive single-loop consumer the flow is measured against.

What one would write first: ``json.loads`` per line, per model a ``deque(maxlen=window)`` of the
records and a ``Counter`` of (truth, prediction) pairs, and at each emission the same document as
the job's (window bounds, sorted labels, matrix, the same metrics, in plain Python). It does the
job's work minus validation and dead letters (the benchmark input has no bad record).

    python bench/naive_consumer.py FILE [--window 1000] [--emit-every 100]

prints ``{"records", "documents", "seconds", "cpu"}``: the loop's wall and CPU time, from file
open to end.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def metrics(labels: list[str], matrix: list[list[int]]) -> dict[str, Any]:
    """scikit-learn's metrics of ``matrix`` over the labels present in it, in plain Python."""
    k = len(labels)
    support = [sum(row) for row in matrix]
    predicted = [sum(matrix[i][j] for i in range(k)) for j in range(k)]
    tp = [matrix[i][i] for i in range(k)]
    n = sum(support)
    per_class: dict[str, dict[str, Any]] = {}
    present = [i for i in range(k) if support[i] or predicted[i]]
    for i in present:
        t, s, p = tp[i], support[i], predicted[i]
        fp, fn = p - t, s - t
        per_class[labels[i]] = {
            "tp": t,
            "fp": fp,
            "fn": fn,
            "tn": n - t - fp - fn,
            "precision": _ratio(t, p),
            "recall": _ratio(t, s),
            "f1": _ratio(2 * t, 2 * t + fp + fn),
            "support": s,
        }
    if n == 0:
        out: dict[str, Any] = dict.fromkeys(
            ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mcc", "kappa")
        )
        out["per_class"] = per_class
        return out
    trace = sum(tp)
    f1 = [2 * tp[i] / (support[i] + predicted[i]) for i in present]
    recalls = [tp[i] / support[i] for i in present if support[i]]
    s_dot_p = sum(support[i] * predicted[i] for i in present)
    p_dot_p = sum(predicted[i] ** 2 for i in present)
    s_dot_s = sum(support[i] ** 2 for i in present)
    cov_ytyp = trace * n - s_dot_p
    cov_ypyp = n * n - p_dot_p
    cov_ytyt = n * n - s_dot_s
    expected = n - s_dot_p / n
    return {
        "accuracy": trace / n,
        "balanced_accuracy": sum(recalls) / len(recalls),
        "macro_f1": sum(f1) / len(f1),
        "weighted_f1": sum(f * support[i] for f, i in zip(f1, present, strict=True)) / n,
        "mcc": (cov_ytyp / math.sqrt(cov_ytyt * cov_ypyp)) if cov_ytyt * cov_ypyp else None,
        "kappa": (1 - (n - trace) / expected) if expected else None,
        "per_class": per_class,
    }


class NaiveModel:
    """One model's window: the records themselves and the pair counts they add up to."""

    def __init__(self, name: str, window: int) -> None:
        self.name = name
        self.records: deque[tuple[str, str, Any, int]] = deque(maxlen=window)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.labels: set[str] = set()
        self.seq = 0
        self.emitted = 0

    def add(self, truth: str, pred: str, rid: Any, ts: int) -> None:
        records = self.records
        if len(records) == records.maxlen:
            old = records[0]
            self.counts[old[0], old[1]] -= 1
        records.append((truth, pred, rid, ts))
        self.counts[truth, pred] += 1
        self.labels.add(truth)
        self.labels.add(pred)
        self.seq += 1

    def document(self) -> dict[str, Any]:
        self.emitted = self.seq
        labels = sorted(self.labels)
        counts = self.counts
        matrix = [[counts.get((t, p), 0) for p in labels] for t in labels]
        first, last = self.records[0], self.records[-1]
        size = self.records.maxlen or 0
        return {
            "model": self.name,
            "window": {
                "kind": "count",
                "size": size,
                "count": len(self.records),
                "full": len(self.records) == size,
                "first_id": first[2],
                "last_id": last[2],
                "start": _iso(first[3]),
                "end": _iso(last[3]),
            },
            "labels": labels,
            "matrix": matrix,
            "metrics": metrics(labels, matrix),
            "seq": self.seq,
            "emitted_at": _iso(int(datetime.now(tz=UTC).timestamp() * 1000)),
        }


def _predicted(entry: Any) -> str:
    if isinstance(entry, dict):
        best, best_score = "", -math.inf
        for label, score in entry.items():
            if score > best_score or (score == best_score and label < best):
                best, best_score = label, score
        return best
    return str(entry)


def _ts_ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return (datetime.fromisoformat(value) - _EPOCH) // _ONE_MS


def consume(
    path: Path,
    window: int = 1000,
    emit_every: int = 100,
    out: Callable[[dict[str, Any]], object] = lambda doc: None,
) -> tuple[int, int]:
    """Read ``path`` and hand every document to ``out``; return (records, documents)."""
    models: dict[str, NaiveModel] = {}
    records = documents = 0
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            records += 1
            truth, rid, ts = str(rec["label"]), rec["id"], _ts_ms(rec["ts"])
            for name, entry in rec["predictions"].items():
                model = models.get(name)
                if model is None:
                    model = models[name] = NaiveModel(name, window)
                model.add(truth, _predicted(entry), rid, ts)
                if model.seq % emit_every == 0:
                    out(model.document())
                    documents += 1
    for model in models.values():
        if model.seq > model.emitted:
            out(model.document())
            documents += 1
    return records, documents


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--emit-every", type=int, default=100)
    args = p.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    records, documents = consume(args.file, args.window, args.emit_every)
    print(
        json.dumps(
            {
                "records": records,
                "documents": documents,
                "seconds": time.perf_counter() - start,
                "cpu": time.process_time() - cpu,
            }
        )
    )


if __name__ == "__main__":
    main()
