"""A window's join counts: running totals per shard, whatever order they arrive in."""

from __future__ import annotations

import pickle

import numpy as np

from flows.windows.latency import JoinLedger


def test_totals_from_a_shard_arrive_out_of_order_and_the_newest_counts() -> None:
    ledger = JoinLedger()
    ledger.totals(0, seen=5, expired=1)
    ledger.totals(1, seen=3, expired=0)
    ledger.totals(0, seen=4, expired=1)  # an older report of shard 0, arriving late
    ledger.log(6, np.arange(6, dtype=np.int64))  # six joined records
    info = ledger.info(6, 6)
    assert (info["seen"], info["joined"], info["expired"], info["waiting"]) == (8, 6, 1, 1)


def test_combined_records_and_a_checkpoint_without_shards() -> None:
    """A checkpoint of the ledger before per-shard totals: its counts are the base."""
    old = {"start": 0, "values": np.zeros(0, dtype=np.int64), "seen": 10, "joined": 7, "expired": 2}
    ledger = JoinLedger(old)  # type: ignore[arg-type]
    ledger.totals(0, seen=3, expired=1)  # the join restored from the same checkpoint: from zero
    ledger.log(2, None)  # two combined records: seen and joined at once
    info = ledger.info(2, 2)
    assert (info["seen"], info["joined"], info["expired"]) == (15, 9, 3)
    again = JoinLedger(pickle.loads(pickle.dumps(ledger.snapshot())))
    assert (again.seen, again.joined, again.expired) == (15, 9, 3)
