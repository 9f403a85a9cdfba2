"""Shards' parts of one batch merged back: what one shard would have joined, in its order."""

from __future__ import annotations

import json
import random

import pytest

from flows.parsing.batches import ModelColumns, RawBatch, parse_batch
from flows.parsing.halves import Halves
from flows.windows.join_order import JoinOrderLogic, JoinPart, merge_results
from flows.windows.join_store import JoinCounts, JoinResult, JoinStore

T0 = 1_795_341_600_000


def halves(lines: list[dict[str, object]], start: int) -> Halves:
    values = [json.dumps(line).encode() for line in lines]
    positions = list(range(start, start + len(values)))
    parsed = parse_batch(RawBatch(values, [0] * len(values), "o", positions), join=True)
    assert parsed.halves is not None
    return parsed.halves


def events(seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(600):
        model = {"A": 0.2 + (i % 5) / 10, "B": 0.8 - (i % 5) / 10}
        if i % 3 == 0:
            model = {"C": 0.6, "A": 0.4}  # another score key first: tables differ per shard
        out.append({"id": i, "ts": T0 + i, "predictions": {"m1": model, "m2": "B"}})
        at = max(0, len(out) - rng.randrange(0, 80))
        out.insert(at, {"id": i, "ts": T0 + i + 5, "label": rng.choice("ABC")})
    return out


def canonical(cols: ModelColumns) -> tuple[object, ...]:
    """The records as values (label text, score per key), not codes into a batch's tables."""
    scores: list[dict[str, float]] = []
    for row in range(len(cols)):
        if cols.scores is None:
            scores.append({})
            continue
        values = cols.scores[row].tolist()
        scores.append({k: v for k, v in zip(cols.score_keys, values, strict=True) if v == v})
    return (
        [cols.labels[c] for c in cols.truth.tolist()],
        [cols.labels[c] for c in cols.pred.tolist()],
        cols.ids,
        cols.ts.tolist(),
        None if cols.positions is None else cols.positions.tolist(),
        None if cols.latency is None else cols.latency.tolist(),
        scores,
    )


@pytest.mark.parametrize(("seed", "shards"), [(1, 2), (2, 3), (3, 5)])
def test_merged_parts_are_what_one_shard_joins(seed: int, shards: int) -> None:
    lines = events(seed)
    one = JoinStore(86_400_000)
    many = [JoinStore(86_400_000) for _ in range(shards)]
    order = JoinOrderLogic(shards, None)
    at = 0
    rng = random.Random(seed)
    while at < len(lines):
        size = rng.choice([1, 9, 70, 200])
        batch = halves(lines[at : at + size], at)
        at += size
        want = one.step(batch)
        parts = [JoinPart("w", k, many[k].step(part)) for k, part in reversed(batch.shards(shards))]
        got = merge_results([p.result for p in sorted(parts, key=lambda p: p.shard)])
        # Running totals per shard: summed over the shards, one shard's totals.
        summed: dict[str, list[int]] = {}
        for store in many:
            for c in store.all_counts():
                total = summed.setdefault(c.model, [0, 0])
                total[0] += c.seen
                total[1] += c.expired
        assert summed == {c.model: [c.seen, c.expired] for c in one.all_counts()}
        assert {c.model for c in want.counts.values()} <= {m for m, _ in got.counts}
        assert sorted(map(repr, got.dead)) == sorted(map(repr, want.dead))
        assert got.joined.keys() == want.joined.keys()
        for model, cols in want.joined.items():
            assert canonical(got.joined[model]) == canonical(cols)
        # The order step gives the same, whichever order the parts reach it in.
        emitted, _ = order.on_batch(parts)
        merged = [x for x in emitted if isinstance(x, ModelColumns)]
        assert [canonical(c) for c in merged] == [canonical(c) for c in got.joined.values()]


def test_parts_wait_until_every_shard_answered() -> None:
    logic = JoinOrderLogic(2, None)
    first = JoinResult(counts={("m", 0): JoinCounts("m", seen=2)})
    second = JoinResult(counts={("m", 0): JoinCounts("m", seen=3)})
    out, _ = logic.on_batch([JoinPart("w", 0, first), JoinPart("w", 0, second)])
    assert out == [] and logic.snapshot() == [
        [JoinPart("w", 0, first), JoinPart("w", 0, second)],
        [],
    ]
    out, _ = logic.on_batch([JoinPart("w", 1, JoinResult())])
    assert out == [JoinCounts("m", seen=2)]
    out, _ = logic.on_batch([JoinPart("w", 1, JoinResult())])
    assert out == [JoinCounts("m", seen=3)] and logic.snapshot() == [[], []]
