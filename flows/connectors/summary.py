"""Keeps each model's trend and prints the summary table when a bounded input ends."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, TextIO

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.report import ModelTrend, table
from flows.telemetry import Progress


class _SummaryPartition(StatefulSinkPartition[dict[str, Any], dict[str, ModelTrend]]):
    def __init__(self, resume: dict[str, ModelTrend] | None, progress: Progress,
                 stream: TextIO) -> None:
        self._trends = dict(resume or {})
        self._progress = progress
        self._stream = stream

    def write_batch(self, values: list[dict[str, Any]]) -> None:
        for doc in values:
            trend = self._trends.get(doc["model"])
            if trend is None:
                trend = self._trends[doc["model"]] = ModelTrend(doc["model"])
            trend.update(doc)

    def snapshot(self) -> dict[str, ModelTrend]:
        return {model: replace(trend) for model, trend in self._trends.items()}

    def close(self) -> None:
        print(self._progress.finish(), file=self._stream)
        if self._trends:
            print(table(self._trends.values()), file=self._stream)
        self._stream.flush()


class SummarySink(FixedPartitionedSink[dict[str, Any], dict[str, ModelTrend]]):
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
