"""The job of ``flows.confusion``, with its file source held at a line the test chooses.

Run as ``python -m bytewax.run tests.gated_flow``. ``TEST_GATE_FILE`` names a file
holding a line number: the file source reads no line past it until the file says more (or is
removed, which lifts the gate). A test
that must kill the job "mid-way" then waits for a state (the input read up to the gate, its
documents written, snapshots taken) instead of racing the job's speed: however fast the machine,
the job cannot finish the input before the kill, and however slow, the test waits for it.

Only the source is wrapped; parsing, windows, snapshots, recovery and sinks are the real job's,
with the same step ids, so the real ``flows.confusion`` resumes from its snapshots.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.inputs import Source, StatefulSourcePartition

from flows.confusion import build_flow
from flows.connectors.files import JsonLinesSource
from flows.parsing.batches import RawBatch
from flows.recovery_store import backup_interval_from, recovery_dir_from
from flows.settings import Settings, load_settings
from flows.telemetry import heartbeat_from_env

GATE = Path(os.environ["TEST_GATE_FILE"])
PAUSE = timedelta(milliseconds=50)


def gate_line() -> float:
    """The last line the source may read now: the gate file's number, no limit without it."""
    try:
        return int(GATE.read_text() or 0)
    except FileNotFoundError:
        return float("inf")


class _GatedPartition(StatefulSourcePartition[RawBatch, tuple[int, int]]):
    def __init__(self, inner: StatefulSourcePartition[RawBatch, tuple[int, int]]) -> None:
        self._inner = inner
        self._paused = False

    def next_batch(self) -> list[RawBatch]:
        _offset, line = self._inner.snapshot()
        self._paused = line >= gate_line()
        return [] if self._paused else self._inner.next_batch()

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + PAUSE if self._paused else None

    def snapshot(self) -> tuple[int, int]:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class GatedSource(JsonLinesSource):
    """`JsonLinesSource` whose partition stops at `gate_line` (the batch may end past it)."""

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, int] | None
    ) -> _GatedPartition:  # type: ignore[override]
        return _GatedPartition(super().build_part(step_id, for_part, resume_state))


def _gated_source(settings: Settings) -> Source[RawBatch]:
    assert settings.source == "file" and settings.input is not None
    return GatedSource(settings.input, settings.batch_size, heartbeat_from_env())


_settings = load_settings()
flow: Dataflow = build_flow(
    _settings,
    source=_gated_source(_settings),
    recovery_dir=recovery_dir_from(sys.argv),
    backup_interval_s=backup_interval_from(sys.argv),
)
