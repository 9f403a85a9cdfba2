"""The built-in demo stream as a resumable Bytewax source."""

from __future__ import annotations

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.demo import START_MS, STEP_MS, delayed_slice, delayed_slices, demo_lines
from flows.parsing.batches import RawBatch
from flows.telemetry import Heartbeat


class _DemoPartition(StatefulSourcePartition[RawBatch, int]):
    def __init__(
        self, seed: int, total: int, batch_size: int, resume: int | None, heartbeat: Heartbeat
    ) -> None:
        self._seed, self._total, self._batch = seed, total, batch_size
        self._next = resume or 0
        self._heartbeat = heartbeat
        self._ended = False

    def next_batch(self) -> list[RawBatch]:
        self._heartbeat.beat()
        if self._next >= self._total:
            if self._ended:
                raise StopIteration
            self._ended = True  # one empty batch says "end reached" (see connectors.console)
            return [RawBatch([], [], "demo", [])]
        start, stop = self._next, min(self._next + self._batch, self._total)
        values = demo_lines(self._seed, self._total, start, stop)
        self._next = stop
        positions = list(range(start, stop))
        return [RawBatch(values, [START_MS + i * STEP_MS for i in positions], "demo", positions)]

    def snapshot(self) -> int:
        return self._next


class _DelayedPartition(StatefulSourcePartition[RawBatch, int]):
    """The delayed-labels demo, one time slice of ``batch_size`` records' span per batch."""

    def __init__(
        self, seed: int, total: int, batch_size: int, resume: int | None, heartbeat: Heartbeat
    ) -> None:
        self._seed, self._total = seed, total
        self._slice_ms = batch_size * STEP_MS
        self._slices = delayed_slices(total, self._slice_ms)
        self._next = resume or 0
        self._heartbeat = heartbeat
        self._ended = False

    def next_batch(self) -> list[RawBatch]:
        self._heartbeat.beat()
        if self._next >= self._slices:
            if self._ended:
                raise StopIteration
            self._ended = True
            return [RawBatch([], [], "demo", [])]
        values, positions = delayed_slice(self._seed, self._total, self._next, self._slice_ms)
        fallback = [START_MS + self._next * self._slice_ms] * len(values)
        self._next += 1
        return [RawBatch(values, fallback, "demo", positions)]

    def snapshot(self) -> int:
        return self._next


class DemoSource(FixedPartitionedSource[RawBatch, int]):
    """``total`` synthetic records (see `flows.demo`), resuming at the next unread record.

    With ``delayed``, the records come as prediction halves and later label halves
    (``CONFUSION_DEMO_LABELS=delayed``); the state is then the next time slice.
    """

    def __init__(
        self,
        seed: int,
        total: int,
        batch_size: int,
        heartbeat: Heartbeat | None = None,
        delayed: bool = False,
    ) -> None:
        self.seed, self.total, self.batch_size = seed, total, batch_size
        self.heartbeat = heartbeat or Heartbeat(None)
        self.delayed = delayed

    def list_parts(self) -> list[str]:
        return ["demo-delayed" if self.delayed else "demo"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[RawBatch, int]:
        kind = _DelayedPartition if self.delayed else _DemoPartition
        return kind(self.seed, self.total, self.batch_size, resume_state, self.heartbeat)
