"""Label latency of the records a window holds, and the join counts a document reports.

With delayed labels a window is built from records whose labels arrived later; a user needs to
know how late (label time minus prediction time) and how many predictions still wait. The log
keeps one int64 per record the window may hold, numbered like the window's ``seq``; a record
that came combined (prediction and label together) has no latency.
"""

from __future__ import annotations

import math
from typing import Any, NotRequired, TypedDict

import numpy as np
from numpy.typing import NDArray

NONE = np.iinfo(np.int64).min  # a combined record: no latency
JOIN_COUNTS = ("seen", "joined", "expired", "waiting")  # the document's join object ...
LATENCY_KEYS = ("count", "p50", "p95", "max")  # ... and its latency_ms


class LatencySnapshot(TypedDict):
    start: int  # seq of the first logged record minus one
    values: NDArray[np.int64]
    seen: int  # combined records, plus the totals of checkpoints older than ``shards``
    joined: int
    expired: int
    shards: NotRequired[dict[int, tuple[int, int]]]  # shard -> newest (seen, expired) totals


def nearest_rank(values: NDArray[np.int64], q: float) -> int:
    """The nearest-rank percentile: the smallest value with at least ``q`` of them at or below."""
    k = max(math.ceil(q * len(values)), 1) - 1
    return int(np.partition(values, k)[k])


class JoinLedger:
    """Per model: predictions seen, joined, expired, and the latencies of the window's records."""

    __slots__ = ("_combined", "_shards", "_start", "_values", "base_expired", "base_seen", "joined")

    def __init__(self, snap: LatencySnapshot | None = None) -> None:
        self.base_seen = self.joined = self.base_expired = 0
        # The newest running totals from each join shard: the largest, since totals from one
        # shard may arrive out of order (see flows.windows.join_store.JoinCounts).
        self._shards: dict[int, tuple[int, int]] = {}
        # Whether the last logged batch was combined records: a document part way through a
        # batch counts that batch's records up to its own only.
        self._combined = False
        self._start = 0  # records numbered _start + 1 .. _start + len(_values) are logged
        self._values: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        if snap is not None:
            self._start = snap["start"]
            self._values = np.asarray(snap["values"], dtype=np.int64)
            self.base_seen, self.joined = snap["seen"], snap["joined"]
            self.base_expired = snap["expired"]
            self._shards = dict(snap.get("shards", {}))

    @property
    def seen(self) -> int:
        return self.base_seen + sum(seen for seen, _ in self._shards.values())

    @property
    def expired(self) -> int:
        return self.base_expired + sum(expired for _, expired in self._shards.values())

    def totals(self, shard: int, seen: int, expired: int) -> None:
        """A join shard's running totals for this model (ignored if older than what we have)."""
        old = self._shards.get(shard, (0, 0))
        self._shards[shard] = (max(old[0], seen), max(old[1], expired))

    def arrived(self, n: int, combined: bool) -> None:
        """Count ``n`` records that reached the window step: joined ones, or combined ones
        (prediction and label together), which are seen and joined at once."""
        if combined:
            self.base_seen += n
        self.joined += n

    def log(self, n: int, latency: NDArray[np.int64] | None) -> None:
        """Log the latencies of the next ``n`` records the window adds (None: combined) and
        count them as joined (combined ones as seen too)."""
        self._combined = latency is None
        if latency is None:
            latency = np.full(n, NONE, dtype=np.int64)
        self.arrived(n, self._combined)
        self._values = np.concatenate([self._values, latency])

    def keep(self, seq: int, held: int) -> None:
        """Forget what lies before the window's ``held`` last records (after record ``seq``)."""
        first = seq - held  # records after this one are held
        if first > self._start:
            self._values = self._values[first - self._start :]
            self._start = first

    def info(self, seq: int, count: int) -> dict[str, Any]:
        """The document's ``join`` object for the window of records ``seq - count + 1 .. seq``."""
        lo, hi = seq - count - self._start, seq - self._start
        values = self._values[max(lo, 0) : max(hi, 0)]
        values = values[values != NONE]
        latency: dict[str, Any] = {"count": len(values), "p50": None, "p95": None, "max": None}
        if len(values):
            latency.update(
                p50=nearest_rank(values, 0.5),
                p95=nearest_rank(values, 0.95),
                max=int(values.max()),
            )
        ahead = max(self._start + len(self._values) - seq, 0)  # logged records after this one
        joined = self.joined - ahead
        seen = self.seen - (ahead if self._combined else 0)
        expired = self.expired
        return {
            "seen": seen,
            "joined": joined,
            "expired": expired,
            "waiting": seen - joined - expired,
            "latency_ms": latency,
        }

    def snapshot(self) -> LatencySnapshot:
        return {
            "start": self._start,
            "values": self._values.copy(),
            "seen": self.base_seen,
            "joined": self.joined,
            "expired": self.base_expired,
            "shards": dict(self._shards),
        }
