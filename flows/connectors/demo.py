"""The built-in demo stream as a resumable Bytewax source."""

from __future__ import annotations

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.demo import START_MS, STEP_MS, demo_lines
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


class DemoSource(FixedPartitionedSource[RawBatch, int]):
    """``total`` synthetic records (see `flows.demo`), resuming at the next unread record."""

    def __init__(
        self, seed: int, total: int, batch_size: int, heartbeat: Heartbeat | None = None
    ) -> None:
        self.seed, self.total, self.batch_size = seed, total, batch_size
        self.heartbeat = heartbeat or Heartbeat(None)

    def list_parts(self) -> list[str]:
        return ["demo"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _DemoPartition:
        return _DemoPartition(self.seed, self.total, self.batch_size, resume_state, self.heartbeat)
