"""The naive single-loop consumer the flow is measured against.

What one would write first: ``json.loads`` per line, per model a ``deque(maxlen=window)`` of the
records and a ``Counter`` of (truth, prediction) pairs, and at each emission the same document as
the job's (window bounds, sorted labels, matrix, the same metrics, in plain Python). It does the
job's work minus validation and dead letters (the benchmark input has no bad record). With
``--duration-ms`` the window holds the records of the last duration of event time instead (a
deque popped from the left); with ``--ensemble model=weight,...`` one more model predicts the
arg-max of the members' weighted scores (a bare label scores 1), as the job's ensemble.

    python bench/naive_consumer.py FILE [--window 1000] [--emit-every 100]
                                        [--duration-ms MS] [--ensemble model1=0.5,...]

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

    def __init__(self, name: str, window: int, duration_ms: int | None = None) -> None:
        self.name = name
        self.duration_ms = duration_ms
        self.records: deque[tuple[str, str, Any, int]] = deque(
            maxlen=None if duration_ms else window
        )
        self.counts: Counter[tuple[str, str]] = Counter()
        self.labels: set[str] = set()
        self.seq = 0
        self.emitted = 0
        self.newest: int | None = None
        self.first_ts: int | None = None
        self.last: tuple[str, str, Any, int] | None = None

    def add(self, truth: str, pred: str, rid: Any, ts: int) -> None:
        records = self.records
        record = (truth, pred, rid, ts)
        self.labels.add(truth)
        self.labels.add(pred)
        self.seq += 1
        self.last = record
        if self.duration_ms is not None:
            self._add_timed(record)
            return
        if len(records) == records.maxlen:
            old = records[0]
            self.counts[old[0], old[1]] -= 1
        records.append(record)
        self.counts[truth, pred] += 1

    def _add_timed(self, record: tuple[str, str, Any, int]) -> None:
        assert self.duration_ms is not None
        ts = record[3]
        if self.first_ts is None:
            self.first_ts = ts
        if self.newest is None or ts > self.newest:
            self.newest = ts
        cutoff = self.newest - self.duration_ms
        records = self.records
        if ts > cutoff:  # a record already outside the window counts in seq only
            records.append(record)
            self.counts[record[0], record[1]] += 1
        while records and records[0][3] <= cutoff:
            old = records.popleft()
            self.counts[old[0], old[1]] -= 1

    def document(self) -> dict[str, Any]:
        self.emitted = self.seq
        labels = sorted(self.labels)
        counts = self.counts
        matrix = [[counts.get((t, p), 0) for p in labels] for t in labels]
        assert self.last is not None
        last = self.last
        first = self.records[0] if self.records else last
        if self.duration_ms is None:
            kind, size = "count", self.records.maxlen or 0
            full = len(self.records) == size
        else:
            assert self.newest is not None and self.first_ts is not None
            kind, size = "time", self.duration_ms
            full = self.newest - self.first_ts >= self.duration_ms
        return {
            "model": self.name,
            "window": {
                "kind": kind,
                "size": size,
                "count": len(self.records),
                "full": full,
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


def _ensemble(weights: dict[str, float], entries: dict[str, Any]) -> str | None:
    """The arg-max of the members' weighted scores (a bare label scores 1); ties: sort first."""
    totals: dict[str, float] = {}
    voted = False
    for name, entry in entries.items():
        weight = weights.get(name)
        if weight is None:
            continue
        voted = True
        if isinstance(entry, dict):
            for label, score in entry.items():
                totals[label] = totals.get(label, 0.0) + weight * score
        else:
            label = str(entry)
            totals[label] = totals.get(label, 0.0) + weight
    if not voted:
        return None
    best = max(totals.values())
    return min(label for label, total in totals.items() if total == best)


def _ts_ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return (datetime.fromisoformat(value) - _EPOCH) // _ONE_MS


def consume(
    path: Path,
    window: int = 1000,
    emit_every: int = 100,
    out: Callable[[dict[str, Any]], object] = lambda doc: None,
    duration_ms: int | None = None,
    ensemble: dict[str, float] | None = None,
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
            predicted = [(name, _predicted(e)) for name, e in rec["predictions"].items()]
            if ensemble:
                combined = _ensemble(ensemble, rec["predictions"])
                if combined is not None:
                    predicted.append(("ensemble", combined))
            for name, pred in predicted:
                model = models.get(name)
                if model is None:
                    model = models[name] = NaiveModel(name, window, duration_ms)
                model.add(truth, pred, rid, ts)
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
    p.add_argument("--duration-ms", type=int, default=None, help="a time window of this span")
    p.add_argument("--ensemble", default="", help="model=weight,... (the job's ensemble)")
    args = p.parse_args()
    weights = {
        name: float(w) for name, _, w in (p.rpartition("=") for p in args.ensemble.split(",") if p)
    }
    start, cpu = time.perf_counter(), time.process_time()
    records, documents = consume(
        args.file, args.window, args.emit_every, duration_ms=args.duration_ms, ensemble=weights
    )
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
