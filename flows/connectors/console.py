"""The terminal: documents as JSON lines on stdout (``CONFUSION_SINK=console``), and the run's
totals and summary table on stderr when a bounded run ends (``CONFUSION_SUMMARY``).

The summary partition is one, on one worker of one process, so everything it prints must reach it
through the dataflow: the documents (for the table) and one `Tally` per parsed batch (for the
totals line), whichever process parsed it. Bytewax builds a partition that has no snapshot only
when its first item arrives, and closes only partitions it built; a tally for every batch,
including the empty batch a bounded source sends when it reaches its end, is what makes a run
that emits no document (empty input, only bad records, resumed at the very end) print its summary.
"""

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
from flows.output.summary import ModelTrend, Tally, summary_table
from flows.telemetry import Progress, Totals


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
SummaryItem = Document | Tally


class _SummaryTablePartition(StatefulSinkPartition[SummaryItem, TrendState]):
    def __init__(self, resume: TrendState | None, progress: Progress, stream: TextIO) -> None:
        self._trends = {model: ModelTrend(**fields) for model, fields in (resume or {}).items()}
        self._progress = progress
        self._stream = stream
        self._totals = Totals()  # this run's, cluster-wide (the trends span every run)

    def write_batch(self, values: list[SummaryItem]) -> None:
        totals = self._totals
        for item in values:
            if isinstance(item, Tally):
                totals.records += item.records
                totals.rejected_records += item.rejected_records
                totals.rejected_entries += item.rejected_entries
                continue
            totals.documents += 1
            trend = self._trends.get(item["model"])
            if trend is None:
                trend = self._trends[item["model"]] = ModelTrend(item["model"])
            trend.update(item)

    def snapshot(self) -> TrendState:
        return {model: asdict(trend) for model, trend in self._trends.items()}

    def close(self) -> None:
        elapsed = self._progress.finish()
        rate = self._totals.records / elapsed if elapsed > 0 else 0.0
        print(
            self._totals.line(rate).replace("rec/s", f"rec/s over {elapsed:.1f}s"),
            file=self._stream,
        )
        if self._trends:
            print(summary_table(self._trends.values()), file=self._stream)
        self._stream.flush()


class SummaryTableSink(FixedPartitionedSink[SummaryItem, TrendState]):
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

    def build_part(
        self, step_id: str, for_part: str, resume_state: TrendState | None
    ) -> _SummaryTablePartition:
        return _SummaryTablePartition(resume_state, self.progress, self.stream)
