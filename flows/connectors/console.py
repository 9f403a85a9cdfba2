"""The terminal: documents as JSON lines on stdout (``CONFUSION_SINK=console``), and the summary
table on stderr when a bounded run ends (``CONFUSION_SUMMARY``)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any, TextIO

from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from flows.connectors.files import encode_json
from flows.output.documents import Document
from flows.output.summary import ModelTrend, summary_table
from flows.telemetry import Progress


class _StdoutPartition(StatelessSinkPartition[tuple[str, Any]]):
    def write_batch(self, items: list[tuple[str, Any]]) -> None:
        sys.stdout.buffer.write(b"".join(encode_json(doc) for _, doc in items))
        sys.stdout.buffer.flush()


class ConsoleSink(DynamicSink[tuple[str, Any]]):
    """Every worker writes its own documents to this process's stdout; not deduplicated across
    replays."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdoutPartition:
        return _StdoutPartition()


# A snapshot holds plain dicts, not `ModelTrend` pickles, so it does not depend on where the
# class lives (a module move would otherwise make old checkpoints unreadable).
TrendState = dict[str, dict[str, Any]]


class _SummaryTablePartition(StatefulSinkPartition[Document, TrendState]):
    def __init__(self, resume: TrendState | None, progress: Progress, stream: TextIO) -> None:
        self._trends = {model: ModelTrend(**fields) for model, fields in (resume or {}).items()}
        self._progress = progress
        self._stream = stream

    def write_batch(self, values: list[Document]) -> None:
        for doc in values:
            trend = self._trends.get(doc["model"])
            if trend is None:
                trend = self._trends[doc["model"]] = ModelTrend(doc["model"])
            trend.update(doc)

    def snapshot(self) -> TrendState:
        return {model: asdict(trend) for model, trend in self._trends.items()}

    def close(self) -> None:
        print(self._progress.finish(), file=self._stream)
        if self._trends:
            print(summary_table(self._trends.values()), file=self._stream)
        self._stream.flush()


class SummaryTableSink(FixedPartitionedSink[Document, TrendState]):
    """Keeps each model's trend (in snapshots) and prints the run's totals and the summary table
    when Bytewax closes it, which it does only on a bounded end. One partition, so one worker
    sees every model."""

    def __init__(self, progress: Progress, stream: TextIO = sys.stderr) -> None:
        self.progress = progress
        self.stream = stream

    def list_parts(self) -> list[str]:
        return ["summary"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str,
                   resume_state: TrendState | None) -> _SummaryTablePartition:
        return _SummaryTablePartition(resume_state, self.progress, self.stream)
