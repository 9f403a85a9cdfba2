"""Core update: sliding count-window confusion matrices, ours against River, deque+Counter, sklearn.

Every contender keeps, per model, the confusion matrix of that model's last 1,000 records and is
fed the same records in the same order. Rates are *input records* per CPU-second (one record
carries a prediction of every model, so 10 models mean 10 matrix updates per record). Each
contender is warmed up once, then timed ``--repeats`` times on fresh state; the table shows the
median and the min–max. Before timing, every contender's final matrices are checked against ours.
A second table per stream gives the cost of one emission: our document against the naive loop's
and against scikit-learn's metric functions on the window's records.

    python bench/core_update.py [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
from river import metrics as river_metrics
from river import utils as river_utils
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    Report,
    Section,
    Stat,
    Target,
    command_line,
    finish,
    num,
    parser,
    rate_cell,
    ratio,
    repeat,
    sample_records,
    scaled_records,
    table,
)
from bench.naive_consumer import NaiveModel
from flows.output.documents import document
from flows.parsing.batches import ModelColumns, RawBatch, parse_batch
from flows.parsing.checks import entry_prediction, timestamp_ms
from flows.windows.base import SlidingWindow
from flows.windows.count import CountPolicy

WINDOW = 1000
BATCH = 1000
EMIT_EVERY = 100
Pairs = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class Stream:
    """Records column by column: one truth, and one prediction per model, per record."""

    name: str
    truth: list[str]
    preds: list[list[str]]
    ids: list[str]
    ts: list[int]

    @property
    def models(self) -> int:
        return len(self.preds)

    def __len__(self) -> int:
        return len(self.truth)

    def head(self, n: int) -> Stream:
        return Stream(
            self.name, self.truth[:n], [p[:n] for p in self.preds], self.ids[:n], self.ts[:n]
        )


def sample_stream(n: int) -> Stream:
    """``n`` records of the sample stream (3 models, 2 classes), repeated as needed."""
    sample = sample_records()
    rows = [sample[i % len(sample)] for i in range(n)]
    models = sorted(rows[0]["predictions"])
    return Stream(
        "3 models x 2 classes",
        [r["label"] for r in rows],
        [[entry_prediction(r["predictions"][m])[0] for r in rows] for m in models],
        [f"r-{i + 1:07d}" for i in range(n)],
        [timestamp_ms(r["ts"]) + (i // len(sample)) * 1_500_000 for i, r in enumerate(rows)],
    )


def synthetic_stream(n: int, models: int = 10, classes: int = 20, seed: int = 5) -> Stream:
    """``n`` records of ``models`` models over ``classes`` classes, each right 70% of the time."""
    rng = np.random.default_rng(seed)
    names = [f"c{k:02d}" for k in range(classes)]
    truth = rng.integers(0, classes, n)
    preds = []
    for _ in range(models):
        wrong = rng.integers(0, classes, n)
        preds.append([names[k] for k in np.where(rng.random(n) < 0.7, truth, wrong).tolist()])
    return Stream(
        f"{models} models x {classes} classes",
        [names[k] for k in truth.tolist()],
        preds,
        [f"r-{i + 1:07d}" for i in range(n)],
        [1_795_341_600_000 + 50 * i for i in range(n)],
    )


def batches(n: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + BATCH, n)) for lo in range(0, n, BATCH)]


# ---------------------------------------------------------------- contenders
# Each is built on fresh state; ``run`` feeds the whole stream, ``pairs(m)`` reads model m's
# window back as {(truth, pred): count} for the cross-check.


def batch_columns(s: Stream, lo: int, hi: int) -> list[ModelColumns]:
    """Records ``lo .. hi - 1`` as `parse_batch` hands them to the windows: one `ModelColumns`
    per model, codes into one label table the batch's models share, times as an array."""
    table: dict[str, int] = {}
    truth = np.asarray([table.setdefault(x, len(table)) for x in s.truth[lo:hi]], dtype=np.int32)
    preds = [
        np.asarray([table.setdefault(x, len(table)) for x in p[lo:hi]], dtype=np.int32)
        for p in s.preds
    ]
    labels, ids = list(table), s.ids[lo:hi]
    ts = np.asarray(s.ts[lo:hi], dtype=np.int64)
    return [ModelColumns(f"m{m}", labels, truth, pred, ids, ts) for m, pred in enumerate(preds)]


class OursJobPath:
    label = f"ours: window.add(batch, every={EMIT_EVERY}), batches of {BATCH:,} (the job's path)"
    slow = False
    size = BATCH
    every = EMIT_EVERY

    def __init__(self, s: Stream) -> None:
        # Built untimed, as the parser builds them; the timed part is what ModelWindowLogic
        # does with them (minus the document, timed separately below).
        self.windows = [CountPolicy(WINDOW).new() for _ in range(s.models)]
        self.batches = [
            batch_columns(s, lo, min(lo + self.size, len(s))) for lo in range(0, len(s), self.size)
        ]

    def run(self) -> None:
        windows, every = self.windows, self.every
        for columns in self.batches:
            for window, cols in zip(windows, columns, strict=True):
                window.add(cols, every)

    def pairs(self, m: int) -> Pairs:
        return window_pairs(self.windows[m])


class OursNoViews(OursJobPath):
    label = f"ours: window.add(batch), batches of {BATCH:,}, no emission (update alone)"
    every = 0


class OursPerRecord(OursJobPath):
    label = f"ours: window.add(batch, every={EMIT_EVERY}), one record per batch"
    slow = True  # timed on the first tenth of the stream
    size = 1


class RiverRolling:
    label = "River: Rolling(ConfusionMatrix, window_size=1000), record by record"
    slow = False

    def __init__(self, s: Stream) -> None:
        self.s = s
        self.cms = [
            river_utils.Rolling(river_metrics.ConfusionMatrix, window_size=WINDOW)
            for _ in range(s.models)
        ]

    def run(self) -> None:
        models = list(zip(self.cms, self.s.preds, strict=True))
        for i, t in enumerate(self.s.truth):
            for cm, pred in models:
                cm.update(t, pred[i])

    def pairs(self, m: int) -> Pairs:
        data = self.cms[m].obj.data
        return {(t, p): int(v) for t, row in data.items() for p, v in row.items() if v}


class RiverWithCopies(RiverRolling):
    label = (
        f"River: the same, plus a copy of each matrix at every {EMIT_EVERY}th record "
        "(what an emission reads)"
    )

    def run(self) -> None:
        models = list(zip(self.cms, self.s.preds, strict=True))
        for i, t in enumerate(self.s.truth):
            emit = (i + 1) % EMIT_EVERY == 0
            for cm, pred in models:
                cm.update(t, pred[i])
                if emit:
                    {truth: dict(row) for truth, row in cm.obj.data.items()}


class DequeCounter:
    label = "deque(maxlen=1000) + Counter, record by record"
    slow = False

    def __init__(self, s: Stream) -> None:
        self.s = s
        self.windows: list[deque[tuple[str, str]]] = [deque(maxlen=WINDOW) for _ in range(s.models)]
        self.counts: list[Counter[tuple[str, str]]] = [Counter() for _ in range(s.models)]

    def run(self) -> None:
        models = list(zip(self.windows, self.counts, self.s.preds, strict=True))
        for i, t in enumerate(self.s.truth):
            for window, counts, pred in models:
                if len(window) == WINDOW:
                    counts[window[0]] -= 1
                pair = (t, pred[i])
                window.append(pair)
                counts[pair] += 1

    def pairs(self, m: int) -> Pairs:
        return {k: v for k, v in self.counts[m].items() if v}


class SklearnRecompute:
    label = f"scikit-learn confusion_matrix of the window at every {EMIT_EVERY}th record"
    slow = True

    def __init__(self, s: Stream) -> None:
        self.s = s
        self.labels = sorted(set(s.truth).union(*s.preds))
        self.truth: list[deque[str]] = [deque(maxlen=WINDOW) for _ in range(s.models)]
        self.pred: list[deque[str]] = [deque(maxlen=WINDOW) for _ in range(s.models)]
        self.last: list[Any] = [None] * s.models

    def run(self) -> None:
        labels = self.labels
        for i, t in enumerate(self.s.truth):
            emit = (i + 1) % EMIT_EVERY == 0
            for m, pred in enumerate(self.s.preds):
                self.truth[m].append(t)
                self.pred[m].append(pred[i])
                if emit:
                    self.last[m] = confusion_matrix(
                        list(self.truth[m]), list(self.pred[m]), labels=labels
                    )

    def pairs(self, m: int) -> Pairs:
        matrix = confusion_matrix(list(self.truth[m]), list(self.pred[m]), labels=self.labels)
        return {
            (a, b): int(matrix[i, j])
            for i, a in enumerate(self.labels)
            for j, b in enumerate(self.labels)
            if matrix[i, j]
        }


def window_pairs(window: SlidingWindow) -> Pairs:
    view = window.view()
    return {
        (a, b): int(view.matrix[i, j])
        for i, a in enumerate(view.labels)
        for j, b in enumerate(view.labels)
        if view.matrix[i, j]
    }


Contender = OursJobPath | RiverRolling | DequeCounter | SklearnRecompute
CONTENDERS: list[Callable[[Stream], Contender]] = [
    OursJobPath,
    OursNoViews,
    OursPerRecord,
    RiverRolling,
    RiverWithCopies,
    DequeCounter,
    SklearnRecompute,
]


def check(stream: Stream) -> None:
    """Every contender's final windows equal ours."""
    reference = OursJobPath(stream)
    reference.run()
    for make in CONTENDERS:
        other = make(stream)
        other.run()
        for m in range(stream.models):
            if other.pairs(m) != reference.pairs(m):
                raise AssertionError(f"{other.label}: model {m} window differs from ours")


def measure(stream: Stream, repeats: int) -> dict[str, tuple[int, Stat]]:
    """Records fed and records/s (CPU time) of each contender."""
    rates: dict[str, tuple[int, Stat]] = {}
    warm = stream.head(min(len(stream), 5 * WINDOW))
    for make in CONTENDERS:
        label, slow = make(warm).label, make(warm).slow
        data = stream.head(max(len(stream) // 10, 3 * WINDOW)) if slow else stream
        stat = repeat(
            lambda make=make, data=data: make(data).run,  # type: ignore[misc]
            repeats,
            warmup=make(warm).run,
            clock=time.process_time,
        )
        rates[label] = (len(data), stat.rate(len(data)))
        print(
            f"  {stream.name}: {label}: {num(rates[label][1].median)} records/s",
            file=sys.stderr,
            flush=True,
        )
    return rates


# ---------------------------------------------------------------- emission


def _sklearn_metrics(truth: list[str], pred: list[str]) -> dict[str, Any]:
    """The contract's metrics computed by scikit-learn from the window's records."""
    return {
        "accuracy": accuracy_score(truth, pred),
        "balanced_accuracy": balanced_accuracy_score(truth, pred),
        "macro_f1": f1_score(truth, pred, average="macro", zero_division=0),
        "weighted_f1": f1_score(truth, pred, average="weighted", zero_division=0),
        "mcc": matthews_corrcoef(truth, pred),
        "kappa": cohen_kappa_score(truth, pred),
        "per_class": precision_recall_fscore_support(truth, pred, zero_division=0),
    }


def emission(stream: Stream, calls: int, repeats: int) -> list[tuple[str, Stat]]:
    """Microseconds (CPU) per document of model 0 with a full window, three ways."""
    ours = OursJobPath(stream)
    ours.run()
    window = ours.windows[0]
    naive = NaiveModel("m0", WINDOW)
    for t, p, rid, ts in zip(stream.truth, stream.preds[0], stream.ids, stream.ts, strict=True):
        naive.add(t, p, rid, ts)
    truth, pred = stream.truth[-WINDOW:], stream.preds[0][-WINDOW:]
    few = max(calls // 20, 3)
    contenders: list[tuple[str, Callable[[], object], int]] = [
        (
            "ours: documents.document(model, window.view(), now)",
            lambda: document("m0", window.view(), 0),
            calls,
        ),
        (
            "naive: plain-Python document from the Counter (bench/naive_consumer.py)",
            naive.document,
            calls,
        ),
        (
            "scikit-learn metric functions on the window's 1,000 records",
            lambda: _sklearn_metrics(truth, pred),
            few,
        ),
    ]
    out = []
    for label, call, n in contenders:

        def run(call: Callable[[], object] = call, n: int = n) -> None:
            for _ in range(n):
                call()

        stat = repeat(lambda run=run: run, repeats, clock=time.process_time)  # type: ignore[misc]
        out.append((label, Stat.of(1e6 * v / n for v in stat.runs)))
    return out


# ---------------------------------------------------------------- parsing


def parsing(lines: list[bytes], repeats: int) -> list[tuple[str, Stat]]:
    """Microseconds (CPU) per record to turn JSON lines into something countable."""
    batches = [lines[i : i + BATCH] for i in range(0, len(lines), BATCH)]
    raw = [RawBatch(b, [0] * len(b), "bench", list(range(len(b)))) for b in batches]
    untyped = msgspec.json.Decoder()

    def ours() -> None:
        for batch in raw:
            parse_batch(batch, None)

    def floor() -> None:
        for batch in batches:
            untyped.decode_lines(b"\n".join(batch))

    def per_line(loads: Callable[[bytes], object]) -> Callable[[], None]:
        def run() -> None:
            for line in lines:
                loads(line)

        return run

    out = []
    for label, run in (
        ("ours: parse_batch (decode, validate, columns per model)", ours),
        ("msgspec decode_lines, untyped (decode only)", floor),
        ("orjson.loads per line (decode only)", per_line(orjson.loads)),
        ("json.loads per line (decode only; the naive loop's)", per_line(json.loads)),
    ):
        stat = repeat(lambda run=run: run, repeats, clock=time.process_time)  # type: ignore[misc]
        out.append((label, Stat.of(1e6 * v / len(lines) for v in stat.runs)))
    return out


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    sizes = (1_500, 600) if args.quick else (120_000, 20_000)
    report = Report(
        "core_update",
        "Core update: sliding count-window matrices",
        command_line("core_update.py", argv),
    )
    river_rate = ours_rate = 0.0
    for stream in (sample_stream(sizes[0]), synthetic_stream(sizes[1])):
        check(stream.head(min(len(stream), 3 * WINDOW + 17)))  # all of it when quick
        rates = measure(stream, repeats)
        ours = rates[OursJobPath.label][1].median
        rows = []
        for label, (fed, stat) in rates.items():
            median, span = rate_cell(stat)
            rows.append(
                (
                    label,
                    f"{fed:,}",
                    median,
                    span,
                    num(stat.median * stream.models),
                    ratio(stat.median, ours),
                )
            )
        report.sections.append(
            Section(
                f"{stream.name}, window {WINDOW:,}, median of {repeats}",
                table(
                    (
                        "contender",
                        "records",
                        "records/s",
                        "min–max",
                        "model updates/s",
                        "vs the job's path",
                    ),
                    rows,
                ),
            )
        )
        costs = emission(stream, 200 if args.quick else 2000, repeats)
        report.sections.append(
            Section(
                f"{stream.name}: cost of one document (full window of {WINDOW:,}), "
                f"median of {repeats}",
                table(
                    ("how", "µs per document", "min–max", "vs ours"),
                    [
                        (
                            label,
                            num(stat.median, 1),
                            f"{num(stat.low, 1)}–{num(stat.high, 1)}",
                            ratio(stat.median, costs[0][1].median),
                        )
                        for label, stat in costs
                    ],
                ),
            )
        )
        if stream.models == 3:
            river_rate = rates[RiverRolling.label][1].median
            ours_rate = ours
            per_record = rates[OursPerRecord.label][1].median
            alone = rates[OursNoViews.label][1].median
            copies = rates[RiverWithCopies.label][1].median
            report.targets.append(
                Target(
                    "ours >= 10x River's per-record rate (3 models)",
                    f"the job's path (window.add with a view at every {EMIT_EVERY}th record) "
                    f"{num(ours)} records/s = {ours / river_rate:.1f}x River's update alone "
                    f"({num(river_rate)}), {ours / copies:.1f}x River with a matrix copy at each "
                    f"emission; our update alone {alone / river_rate:.1f}x; one record per batch "
                    f"{per_record / river_rate:.2f}x",
                    ours >= 10 * river_rate,
                )
            )
    lines = list(scaled_records(2_000 if args.quick else 50_000))
    costs = parsing(lines, repeats)
    report.sections.append(
        Section(
            f"Parsing the scaled sample stream ({len(lines):,} records, batches of {BATCH:,}), "
            f"median of {repeats}",
            table(
                ("how", "µs per record", "min–max", "records/s at the median"),
                [
                    (
                        label,
                        num(stat.median, 2),
                        f"{num(stat.low, 2)}–{num(stat.high, 2)}",
                        num(1e6 / stat.median),
                    )
                    for label, stat in costs
                ],
            ),
            ["The fastest decode-only row bounds what one process can do with JSON records."],
        )
    )
    report.data = {
        "river_3x2": river_rate,
        "ours_job_path_3x2": ours_rate,
        "parse_us": {label: stat.median for label, stat in costs},
    }
    report.notes += [
        "Rates are input records per CPU-second of the benchmark process (time.process_time: "
        "the machine is shared, and CPU time is what a neighbour disturbs least); each record "
        "updates every model's window.",
        "The two slowest contenders are timed on the first tenth of the same stream (after the "
        "window has filled, every record costs the same).",
        "The job's path is what ModelWindowLogic.on_batch runs: SlidingWindow.add(batch, every) "
        "on the ModelColumns parse_batch hands over (batch-local label codes shared by the "
        "models, ids, times as an array), stopping at every 100th record of a model to take the "
        "window's view; building the document from the view is timed in the next table.",
        "Ours also keeps each record's id and timestamp (for the document's first/last record); "
        "the other contenders keep only the label pairs.",
        "One record per batch pays the per-batch work (label remapping, record log) on every "
        "record: the cost a record-by-record caller of the batch API would pay.",
        "scikit-learn keeps the window in two deques and recounts it at every emission; River and "
        "deque+Counter update incrementally and are never asked for a matrix.",
        "Before timing, each contender's final windows are checked equal to ours "
        f"on the first {3 * WINDOW + 17:,} records.",
    ]
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
