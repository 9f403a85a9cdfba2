"""The join store's checkpoint: round trips through a base and deltas, and a snapshot's cost
follows what changed in the epoch, not the number of waiting predictions."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from flows.errors import SnapshotError
from flows.parsing.batches import ModelColumns, RawBatch, parse_batch
from flows.parsing.halves import Halves
from flows.windows.join_log import (
    DirSegments,
    InlineSegments,
    NoSegments,
    SegmentLog,
    segment_name,
)
from flows.windows.join_state import JoinLogic, segment_logs
from flows.windows.join_store import CHUNK, JoinCounts, JoinResult, JoinSnapshot, JoinStore

T0 = 1_795_341_600_000
DAY = 86_400_000


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


def same_result(a: JoinResult, b: JoinResult) -> None:
    assert a.counts == b.counts
    assert [(d.raw, d.reason) for d in a.dead] == [(d.raw, d.reason) for d in b.dead]
    assert a.joined.keys() == b.joined.keys()
    for model, x in a.joined.items():
        y = b.joined[model]
        assert x.ids == y.ids and x.labels == y.labels
        assert (x.truth == y.truth).all() and (x.pred == y.pred).all()
        assert (x.ts == y.ts).all() and (x.latency == y.latency).all()  # type: ignore[operator]
        assert x.score_keys == y.score_keys
        if x.scores is None:
            assert y.scores is None
        else:
            assert y.scores is not None and np.array_equal(x.scores, y.scores, equal_nan=True)


def same_state(a: JoinStore, b: JoinStore) -> None:
    assert a.waiting == b.waiting and a.live == b.live and a.labels == b.labels
    assert a.clock == b.clock and a.table.labels == b.table.labels
    # Row numbers may differ (a restored store compacts at other times); what each id holds not.
    assert a.index.keys() == b.index.keys()
    for rid, row in a.index.items():
        other = b.index[rid]
        assert (a.ts[row], a.state[row]) == (b.ts[other], b.state[other])
        for model, slots in a.models.items():
            theirs = b.models[model]
            assert slots.pred[row] == theirs.pred[other]
            if slots.scores is not None:
                assert theirs.scores is not None
                width = slots.scores.shape[1]
                assert np.array_equal(
                    slots.scores[row], theirs.scores[other, :width], equal_nan=True
                )


def test_a_restore_from_base_and_deltas_continues_exactly() -> None:
    n = 3 * CHUNK + 100
    store = JoinStore(DAY)
    store.step(halves([prediction(i) for i in range(n)]))
    first = store.snapshot()
    assert len(first["segments"]) == 1 and first["segments"][0].endswith(".base")
    store.step(halves([label(i) for i in range(5, 15)], "labels"))
    store.step(halves([label(-1)], "labels"))  # waits for a prediction that never comes
    second = store.snapshot()
    assert len(second["segments"]) == 2 and second["segments"][1].endswith(".delta")

    loaded = pickle.loads(pickle.dumps(second))
    restored = JoinStore.restore(DAY, loaded)
    same_state(store, restored)
    assert restored.waiting == n - 10 and list(restored.labels) == ["r--1"]
    more = halves([label(i, "B") for i in (1, 6, 2 * CHUNK + 3, n - 1)], "labels")
    want, got = store.step(more), restored.step(more)
    assert len(want.dead) == 1  # r-6 was joined already
    same_result(want, got)
    assert want.joined["m1"].ids == ["r-1", f"r-{2 * CHUNK + 3}", f"r-{n - 1}"]


def test_a_delta_costs_what_changed_not_what_waits() -> None:
    """The same epoch (100 new predictions, 100 labels) after 20,000 and after 200,000
    waiting predictions writes the same number of bytes, and far fewer than the base."""
    sizes = {}
    for waiting in (20_000, 200_000):
        store = JoinStore(DAY)
        for lo in range(0, waiting, 10_000):
            store.step(halves([prediction(i) for i in range(lo, lo + 10_000)]))
        base = store.snapshot()
        step = [prediction(i) for i in range(waiting, waiting + 100)]
        step += [label(i) for i in range(0, waiting, waiting // 100)]
        store.step(halves(step))
        after = store.snapshot()
        assert after["segments"][0] == base["segments"][0]
        sizes[waiting] = (base["sizes"][0], after["sizes"][-1])
    (base_small, delta_small), (base_big, delta_big) = sizes[20_000], sizes[200_000]
    assert base_big > 9 * base_small
    # Longer ids (r-200000 against r-20000) are the only difference.
    assert abs(delta_big - delta_small) <= 0.03 * delta_small and delta_big < base_small / 50


def test_nothing_changed_writes_nothing() -> None:
    store = JoinStore(DAY)
    store.step(halves([prediction(i) for i in range(10)]))
    first = store.snapshot()
    written = store.log.written
    again = store.snapshot()
    assert store.log.written == written and again["segments"] == first["segments"]


def test_small_deltas_merge_and_a_long_log_becomes_a_new_base() -> None:
    store = JoinStore(DAY)
    store.step(halves([prediction(i) for i in range(1000)]))
    store.snapshot()
    counts = []
    for k in range(1000, 3000):
        store.step(halves([prediction(k)]))
        counts.append(len(store.snapshot()["segments"]))
    assert max(counts) <= 2 + 12  # base plus O(log) deltas
    bases = {s for s in store.log.names if s.endswith(".base")}
    assert len(bases) == 1 and store.log.seq > 2000
    snap = store.snapshot()
    restored = JoinStore.restore(DAY, pickle.loads(pickle.dumps(snap)))
    same_state(store, restored)


def test_segments_in_a_directory_resume_and_forget_a_crashed_runs_future(tmp_path: Path) -> None:
    shard = tmp_path / "join" / "shard-0"
    store = JoinStore(DAY, SegmentLog(DirSegments(shard), keep_s=0))
    store.step(halves([prediction(i) for i in range(500)]))
    store.snapshot()
    store.step(halves([label(i) for i in range(100)], "labels"))
    committed = pickle.loads(pickle.dumps(store.snapshot()))
    assert committed["inline"] is None
    assert sorted(p.name for p in shard.iterdir()) == committed["segments"]
    # The run goes on past the committed epoch, then dies.
    store.step(halves([label(i) for i in range(100, 300)], "labels"))
    store.snapshot()
    (shard / (segment_name(99, "delta") + ".tmp")).write_bytes(b"half")
    assert len(list(shard.iterdir())) > len(committed["segments"])

    resumed = JoinStore.restore(DAY, committed, SegmentLog(DirSegments(shard), keep_s=0))
    assert resumed.waiting == 400
    names = sorted(p.name for p in shard.iterdir())
    assert names == committed["segments"]  # the future and the half-written file are gone
    nxt = halves([label(i, "B") for i in range(50, 150)], "labels")
    fresh = JoinStore.restore(DAY, committed, SegmentLog(InlineSegments(_blobs(shard, names))))
    same_result(fresh.step(nxt), resumed.step(nxt))


def test_retired_segments_are_removed_after_the_grace(tmp_path: Path) -> None:
    shard = tmp_path / "s"
    store = JoinStore(DAY, SegmentLog(DirSegments(shard), keep_s=0))
    store.step(halves([prediction(i) for i in range(100)]))
    store.snapshot()
    for k in range(100, 140):
        store.step(halves([prediction(k)]))
        snap = store.snapshot()
    on_disk = {p.name for p in shard.iterdir()}
    assert set(snap["segments"]) <= on_disk
    assert len(on_disk - set(snap["segments"])) <= 2 * 3 + 2  # retired, within 3 snapshots
    kept = JoinStore(DAY, SegmentLog(DirSegments(tmp_path / "k"), keep_s=3600))
    kept.step(halves([prediction(i) for i in range(100)]))
    kept.snapshot()
    for k in range(100, 140):
        kept.step(halves([prediction(k)]))
        kept.snapshot()
    assert len(list((tmp_path / "k").iterdir())) > len(kept.log.names) + 20


def test_a_missing_segment_stops_the_resume_by_name(tmp_path: Path) -> None:
    shard = tmp_path / "join" / "shard-0"
    store = JoinStore(DAY, SegmentLog(DirSegments(shard)))
    store.step(halves([prediction(i) for i in range(10)]))
    snap = store.snapshot()
    (shard / snap["segments"][0]).unlink()
    with pytest.raises(SnapshotError, match=r"shard-0/0+1\.base, which is missing"):
        JoinStore.restore(DAY, snap, SegmentLog(DirSegments(shard)))


def test_a_version_1_snapshot_still_resumes() -> None:
    store = JoinStore(DAY)
    store.step(halves([prediction(i) for i in range(CHUNK + 10)]))
    store.step(halves([label(i) for i in range(20)] + [label(-5)], "labels"))
    n = len(store.ids)
    chunks = []
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        models = {
            m: (s.pred[lo:hi].copy(), None if s.scores is None else s.scores[lo:hi].copy())
            for m, s in store.models.items()
        }
        chunks.append(
            pickle.dumps((store.ids[lo:hi], store.ts[lo:hi].copy(), store.state[lo:hi], models))
        )
    v1 = {
        "v": 1,
        "labels": list(store.table.labels),
        "chunks": chunks,
        "models": {m: list(s.keys) for m, s in store.models.items()},
        "waiting_labels": [(rid, *lab) for rid, lab in store.labels.items()],
        "clock": dict(store.clock),
    }
    restored = JoinStore.restore(DAY, v1)  # type: ignore[arg-type]
    same_state(store, restored)
    before = {m: list(t) for m, t in store.totals.items()}
    nxt = halves([label(i, "B") for i in range(10, 40)] + [prediction(-5)], "labels")
    want, got = store.step(nxt), restored.step(nxt)
    # Version 1 had no running totals: the restored store counts from zero (the window's
    # ledger of the same checkpoint holds what was counted before).
    for key, counts in want.counts.items():
        seen, expired = before.get(counts.model, [0, 0])
        assert got.counts[key] == JoinCounts(
            counts.model, counts.seen - seen, counts.expired - expired
        )
    want.counts, got.counts = {}, {}
    same_result(want, got)
    assert restored.snapshot()["segments"][0].endswith(".base")


@pytest.mark.parametrize(("seed", "ttl"), [(1, 2_000), (2, 30_000), (3, 30_000), (4, 300_000)])
def test_random_steps_with_snapshots_and_restores_match_an_uninterrupted_store(
    seed: int, ttl: int, tmp_path: Path
) -> None:
    """Predictions, labels (early, late, duplicate, orphan) and expiry in random batches; at
    random points the store is snapshotted and replaced by its restore (from files). The TTLs
    hold from 200 to all 6,000 predictions waiting, so snapshots are bases and deltas both."""
    rng = random.Random(seed)
    events: list[dict[str, object]] = []
    for i in range(6000):
        t = T0 + 10 * i
        if rng.random() < 0.9:
            events.append({**prediction(i), "ts": t})
        if rng.random() < 0.8:
            events.insert(
                max(0, len(events) - rng.randrange(0, 300)),
                {"id": f"r-{i}", "ts": t + 5, "label": rng.choice("AB")},
            )
        if rng.random() < 0.03:
            events.append({**prediction(i), "ts": t})  # a second prediction
    steady, interrupted = JoinStore(ttl), JoinStore(ttl, SegmentLog(DirSegments(tmp_path)))
    at = 0
    while at < len(events):
        size = rng.choice([1, 7, 50, 400])
        batch = halves(events[at : at + size])
        at += size
        same_result(steady.step(batch), interrupted.step(batch))
        if rng.random() < 0.5:
            snap: JoinSnapshot = pickle.loads(pickle.dumps(interrupted.snapshot()))
            log = SegmentLog(DirSegments(tmp_path), keep_s=0)
            interrupted = JoinStore.restore(ttl, snap, log)
            same_state(steady, interrupted)
    assert steady.waiting == interrupted.waiting


def _blobs(directory: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in names}


def test_a_job_without_recovery_makes_no_segment() -> None:
    store = JoinStore(DAY, SegmentLog(NoSegments()))
    store.step(halves([prediction(i) for i in range(100)]))
    snap = store.snapshot()
    assert snap["segments"] == [] and store.log.written == 0
    with pytest.raises(SnapshotError, match="without recovery"):
        JoinStore.restore(DAY, snap, SegmentLog(NoSegments()))


def test_the_operator_resumed_from_version_1_moves_to_segment_files(tmp_path: Path) -> None:
    store = JoinStore(DAY)
    store.step(halves([prediction(i) for i in range(50)]))
    models = {
        m: (s.pred[:50].copy(), None if s.scores is None else s.scores[:50].copy())
        for m, s in store.models.items()
    }
    v1 = {
        "v": 1,
        "labels": list(store.table.labels),
        "chunks": [pickle.dumps((store.ids[:50], store.ts[:50].copy(), store.state[:50], models))],
        "models": {m: list(s.keys) for m, s in store.models.items()},
        "waiting_labels": [],
        "clock": dict(store.clock),
    }
    logic = JoinLogic(DAY, v1, segment_logs(tmp_path))  # type: ignore[arg-type]
    out, _ = logic.on_batch([(2, "w", halves([label(i) for i in range(10)], "labels"))])
    assert sum(isinstance(x, ModelColumns) for x in out) == 2  # m1 and m2 joined
    snap = logic.snapshot()
    assert snap["shard"] == "shard-2" and snap["inline"] is None
    assert sorted(p.name for p in (tmp_path / "join" / "shard-2").iterdir()) == snap["segments"]
    resumed = JoinLogic(DAY, pickle.loads(pickle.dumps(snap)), segment_logs(tmp_path))
    assert resumed.store is not None and resumed.store.waiting == 40 and resumed.store.shard == 2
