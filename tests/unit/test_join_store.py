"""The join store's checkpoint: round trips, and only changed blocks are pickled again."""

from __future__ import annotations

import json
import pickle

from flows.parsing.batches import RawBatch, parse_batch
from flows.parsing.halves import Halves
from flows.windows.join_store import CHUNK, JoinStore

T0 = 1_795_341_600_000


def halves(lines: list[dict[str, object]], origin: str = "o") -> Halves:
    values = [json.dumps(line).encode() for line in lines]
    parsed = parse_batch(
        RawBatch(values, [0] * len(values), origin, list(range(len(values)))), join=True
    )
    assert parsed.halves is not None
    return parsed.halves


def prediction(i: int) -> dict[str, object]:
    scores = {"A": 0.25 + (i % 7) / 10, "B": 0.75 - (i % 7) / 10}
    return {"id": f"r-{i}", "ts": T0 + i, "predictions": {"m1": scores, "m2": "A"}}


def label(i: int, text: str = "A") -> dict[str, object]:
    return {"id": f"r-{i}", "ts": T0 + i + 10, "label": text}


def test_unchanged_blocks_are_the_same_bytes_and_a_restore_continues_exactly() -> None:
    n = 3 * CHUNK + 100
    store = JoinStore(86_400_000)
    store.step(halves([prediction(i) for i in range(n)]))
    first = store.snapshot()
    assert len(first["chunks"]) == 4 and store.waiting == n
    store.step(halves([label(i) for i in range(5, 15)], "labels"))  # all in block 0
    second = store.snapshot()
    assert second["chunks"][0] is not first["chunks"][0]
    assert all(a is b for a, b in zip(first["chunks"][1:], second["chunks"][1:], strict=True))

    loaded = pickle.loads(pickle.dumps(second))
    restored = JoinStore.restore(86_400_000, loaded)
    assert restored.waiting == store.waiting == n - 10
    more = halves([label(i, "B") for i in (1, 6, 2 * CHUNK + 3, n - 1)], "labels")
    want, got = store.step(more), restored.step(more)
    assert len(want.dead) == len(got.dead) == 1  # r-6 was joined already
    for model in ("m1", "m2"):
        a, b = want.joined[model], got.joined[model]
        assert a.ids == b.ids == ["r-1", f"r-{2 * CHUNK + 3}", f"r-{n - 1}"]
        assert (a.pred == b.pred).all() and (a.latency == b.latency).all()  # type: ignore[operator]
        assert a.score_keys == b.score_keys
        if a.scores is not None:
            assert b.scores is not None and (a.scores == b.scores).all()
    assert restored.snapshot()["chunks"][1] is loaded["chunks"][1]  # untouched since restore
