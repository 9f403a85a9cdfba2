"""The per-model summary table printed when a bounded run ends (pure: the sink that feeds it
documents and prints it is `flows.connectors.console.SummaryTableSink`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flows.output.documents import Document
from flows.parsing.batches import ParsedBatch


@dataclass(frozen=True, slots=True)
class Tally:
    """What one parsed batch adds to the run's totals (the summary's first line)."""

    records: int
    rejected_records: int
    rejected_entries: int

    @classmethod
    def of(cls, batch: ParsedBatch) -> Tally:
        return cls(batch.records, batch.rejected_records, batch.rejected_entries)


@dataclass(slots=True)
class ModelTrend:
    """What the table shows of one model: its first, worst and latest window."""

    model: str
    documents: int = 0
    first_seq: int | None = None
    seq: int = 0
    count: int = 0
    size: int = 0
    kind: str = "count"
    classes: int = 0
    first_accuracy: float | None = None
    min_accuracy: float | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    mcc: float | None = None

    def update(self, doc: Document) -> None:
        """Fold in a document; documents may arrive out of order, so ``seq`` decides."""
        self.documents += 1
        acc = doc["metrics"]["accuracy"]
        if acc is not None:
            self.min_accuracy = acc if self.min_accuracy is None else min(self.min_accuracy, acc)
        if self.first_seq is None or doc["seq"] < self.first_seq:
            self.first_seq, self.first_accuracy = doc["seq"], acc
        if doc["seq"] < self.seq:
            return
        self.seq = doc["seq"]
        self.count, self.size = doc["window"]["count"], doc["window"]["size"]
        self.kind = doc["window"]["kind"]
        self.classes = len(doc["metrics"]["per_class"])
        self.accuracy, self.macro_f1 = acc, doc["metrics"]["macro_f1"]
        self.mcc = doc["metrics"]["mcc"]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _window(trend: ModelTrend) -> str:
    if trend.kind == "time":
        return f"{trend.count:,} in {trend.size / 1000:g}s"
    return f"{trend.count:,}/{trend.size:,}"


def summary_table(trends: Iterable[ModelTrend]) -> str:
    """A plain-text table, one row per model, sorted by name."""
    header = (
        "model",
        "records",
        "window",
        "classes",
        "acc first",
        "acc min",
        "acc last",
        "macro F1",
        "MCC",
    )
    rows = [header] + [
        (
            t.model,
            f"{t.seq:,}",
            _window(t),
            str(t.classes),
            _num(t.first_accuracy),
            _num(t.min_accuracy),
            _num(t.accuracy),
            _num(t.macro_f1),
            _num(t.mcc),
        )
        for t in sorted(trends, key=lambda t: t.model)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
