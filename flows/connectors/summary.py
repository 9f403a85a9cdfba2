"""Keeps each model's trend and the run's totals; prints the summary when a bounded input ends.

The summary partition is one, on one worker of one process, so everything it prints must reach it
through the dataflow: the documents (for the table) and one `Tally` per parsed batch (for the
totals line), whichever process parsed it. Bytewax builds a partition that has no snapshot only
when its first item arrives, and closes only partitions it built; a tally for every batch,
including the empty batch a bounded source sends when it reaches its end, is what makes a run
that emits no document (empty input, only bad records, resumed at the very end) print its summary.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, TextIO

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.records import ParsedBatch
from flows.report import ModelTrend, table
from flows.telemetry import Progress, Totals


@dataclass(frozen=True, slots=True)
class Tally:
    """What one parsed batch adds to the run's totals."""

    records: int
    rejected_records: int
    rejected_entries: int

    @classmethod
    def of(cls, batch: ParsedBatch) -> Tally:
        return cls(batch.records, batch.rejected_records, batch.rejected_entries)


SummaryItem = dict[str, Any] | Tally


class _SummaryPartition(StatefulSinkPartition[SummaryItem, dict[str, ModelTrend]]):
    def __init__(self, resume: dict[str, ModelTrend] | None, progress: Progress,
                 stream: TextIO) -> None:
        self._trends = dict(resume or {})
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

    def snapshot(self) -> dict[str, ModelTrend]:
        return {model: replace(trend) for model, trend in self._trends.items()}

    def close(self) -> None:
        elapsed = self._progress.finish()
        rate = self._totals.records / elapsed if elapsed > 0 else 0.0
        print(self._totals.line(rate).replace("rec/s", f"rec/s over {elapsed:.1f}s"),
              file=self._stream)
        if self._trends:
            print(table(self._trends.values()), file=self._stream)
        self._stream.flush()


class SummarySink(FixedPartitionedSink[SummaryItem, dict[str, ModelTrend]]):
    """One partition, so one worker sees every model; Bytewax closes it only on a bounded end."""

    def __init__(self, progress: Progress, stream: TextIO = sys.stderr) -> None:
        self.progress = progress
        self.stream = stream

    def list_parts(self) -> list[str]:
        return ["summary"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str,
                   resume_state: dict[str, ModelTrend] | None) -> _SummaryPartition:
        return _SummaryPartition(resume_state, self.progress, self.stream)
