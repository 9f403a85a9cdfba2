"""An independent oracle of the delayed-labels join, written from the README, not from flows.

It reads events ``(origin, line)`` one at a time, in read order, with the README's rules: a
record without ``label`` is a prediction half, one without ``predictions`` a label half; the clock
is the oldest of the origins' newest event times (halves only); a half waiting since t expires
once the clock passes t + ttl. Joined records come out as combined records (the prediction with
its label; time: the prediction's), in the order they are joined, so `tests.reference` can
recompute the documents from them. It uses only the standard library and json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class JoinOutcome:
    """What the join must produce."""

    joined: list[bytes] = field(default_factory=list)  # combined records, in join order
    latency: dict[str, list[int]] = field(default_factory=dict)  # per model, join order
    seen: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)
    # (kind, id): kind is "orphan", "second-label" or "second-prediction"
    dead: list[tuple[str, Any]] = field(default_factory=list)
    waiting: dict[str, int] = field(default_factory=dict)  # per model, at the end


def join_oracle(events: Iterable[tuple[str, bytes]], ttl_ms: int) -> JoinOutcome:
    out = JoinOutcome()
    newest: dict[str, int] = {}
    preds: dict[Any, tuple[dict[str, Any], str]] = {}  # key -> (record, "waiting"|"joined")
    labels: dict[Any, dict[str, Any]] = {}

    def key(rid: Any) -> tuple[str, Any]:
        return (type(rid).__name__, rid)

    def expire(now: int) -> None:
        for k in [k for k, (r, _) in preds.items() if r["ts"] + ttl_ms < now]:
            record, status = preds.pop(k)
            if status == "waiting":
                for model in record["predictions"]:
                    out.expired[model] = out.expired.get(model, 0) + 1
        for k in [k for k, r in labels.items() if r["ts"] + ttl_ms < now]:
            out.dead.append(("orphan", labels.pop(k)["id"]))

    def join(record: dict[str, Any], label: dict[str, Any]) -> None:
        combined = {**record, "label": label["label"]}
        out.joined.append(json.dumps(combined).encode())
        for model in record["predictions"]:
            out.latency.setdefault(model, []).append(label["ts"] - record["ts"])

    for origin, line in events:
        record = json.loads(line)
        newest[origin] = max(newest.get(origin, record["ts"]), record["ts"])
        now = min(newest.values())
        expire(now)
        k = key(record["id"])
        if "label" not in record:
            if k in preds:
                out.dead.append(("second-prediction", record["id"]))
                continue
            for model in record["predictions"]:
                out.seen[model] = out.seen.get(model, 0) + 1
            if k in labels:
                join(record, labels.pop(k))
                preds[k] = (record, "joined")
            else:
                preds[k] = (record, "waiting")
        else:
            if k in preds and preds[k][1] == "waiting":
                join(preds[k][0], record)
                preds[k] = (preds[k][0], "joined")
            elif k in preds or k in labels:
                out.dead.append(("second-label", record["id"]))
            else:
                labels[k] = record
    for record, status in preds.values():
        if status == "waiting":
            for model in record["predictions"]:
                out.waiting[model] = out.waiting.get(model, 0) + 1
    return out


def nearest_rank(values: Sequence[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


def split(line: bytes) -> tuple[bytes, bytes]:
    """A combined record as its prediction half and its label half (same id and time)."""
    record = json.loads(line)
    label = {"id": record["id"], "ts": record["ts"], "label": record["label"]}
    del record["label"]
    return json.dumps(record).encode(), json.dumps(label).encode()
