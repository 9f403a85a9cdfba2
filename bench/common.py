"""What every benchmark shares: repeats and medians, tables, the machine, the scaled input stream.

Each benchmark prints Markdown tables (readable in a terminal too) and, with ``--json PATH``,
writes a `Report` that ``bench/run`` turns into BENCHMARKS.md. Nothing here imports Bytewax, so
the core benchmark measures only what it means to measure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flows.demo import SAMPLE_RECORDS, SAMPLE_SEED, sample_lines
from flows.parsing.batches import ModelColumns

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "cache"
PYTHON = sys.executable
STREAM_START = datetime(2026, 11, 22, 10, 0, 0, 250_000, tzinfo=UTC)
STREAM_STEP_MS = 250


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class Stat:
    """Median and range of repeated measurements."""

    median: float
    low: float
    high: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        runs = tuple(values)
        return cls(statistics.median(runs), min(runs), max(runs), runs)

    def rate(self, n: float) -> Stat:
        """Turn durations (s) of ``n`` items into items per second (the range flips)."""
        return Stat(
            n / self.median, n / self.high, n / self.low, tuple(n / run for run in self.runs)
        )


def timed(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds one call of ``fn`` takes on ``clock``."""
    start = clock()
    fn()
    return clock() - start


def repeat(
    make: Callable[[], Callable[[], object]],
    repeats: int,
    warmup: Callable[[], object] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Stat:
    """Time ``repeats`` runs, each on fresh state from ``make``; one untimed warm-up first."""
    (warmup or make())()
    return Stat.of(timed(make(), clock) for _ in range(repeats))


# ---------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def rate_cell(stat: Stat) -> tuple[str, str]:
    """Median and ``min–max`` cells of a rate."""
    return num(stat.median), f"{num(stat.low)}–{num(stat.high)}"


def ratio(a: float, b: float) -> str:
    return "-" if b == 0 else f"{a / b:.2f}x"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table whose columns line up in a terminal too (numbers right-aligned)."""
    body = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def numeric(i: int) -> bool:
        return all(r[i][:1].isdigit() or r[i] == "-" for r in body) and bool(body)

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if numeric(i) else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if numeric(i) else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in body)])


# ---------------------------------------------------------------- reports


@dataclass(slots=True)
class Target:
    """A goal from the issue and whether this run met it (None: not measured)."""

    goal: str
    measured: str
    met: bool | None


@dataclass(slots=True)
class Section:
    heading: str
    table: str
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """What one benchmark found, for the terminal and for BENCHMARKS.md."""

    name: str
    title: str
    command: str
    sections: list[Section] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0
    code: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        out = [f"## {self.title}", "", f"`{self.command}`", ""]
        if self.skipped:
            out += [f"SKIPPED: {self.skipped}", ""]
        for section in self.sections:
            out += [f"### {section.heading}", "", section.table, ""]
            out += [f"- {note}" for note in section.notes]
            if section.notes:
                out.append("")
        if self.targets:
            out += ["Targets:", ""]
            out += [f"- {mark(t.met)} {t.goal}: {t.measured}" for t in self.targets]
            out.append("")
        out += [f"- {note}" for note in self.notes]
        return "\n".join(out).rstrip() + "\n"


def mark(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "NOT MEASURED"}[met]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one repeat: checks that it runs, measures little",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5, quick 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the report here (JSON)")
    return p


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run (``--json PATH`` left out)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if "--json" in words:
        i = words.index("--json")
        del words[i : i + 2]
    words = [w for w in words if not w.startswith("--json=")]
    return " ".join([f"python bench/{script}", *words])


def finish(report: Report, args: argparse.Namespace, started: float) -> None:
    """Print the report and write its JSON when asked."""
    report.seconds = time.perf_counter() - started
    report.code = code_version()
    print(report.text(), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")


# ---------------------------------------------------------------- the machine and the code


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """The facts a reader needs to compare these numbers with their own."""
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "ram": f"{_ram_gib():.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **{
            dist: _version(dist)
            for dist in (
                "bytewax",
                "numpy",
                "river",
                "scikit-learn",
                "orjson",
                "confluent-kafka",
                "elasticsearch",
            )
        },
    }


def code_version() -> dict[str, str]:
    """The commit, and a digest of flows/ so a run on a modified tree says so."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "flows").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    head = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", "flows")
    return {
        "commit": head or "unknown",
        "flows_sha256": digest.hexdigest()[:12],
        "flows_modified": "yes" if dirty else "no",
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- the input stream


def sample_records() -> list[dict[str, Any]]:
    """The 6,000 records of the project's sample stream (`flows.demo.sample_lines`), decoded."""
    return [orjson.loads(line) for line in sample_lines()]


def sample_file() -> Path:
    """The sample stream as a JSON-lines file, written once into bench/results/cache."""
    path = CACHE / f"sample-{SAMPLE_SEED}-{SAMPLE_RECORDS}.jsonl"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(b"".join(line + b"\n" for line in sample_lines()))
        tmp.replace(path)
    return path


def scaled_records(n: int, start: int = 0) -> Iterator[bytes]:
    """Records ``start .. start + n - 1`` of the sample stream repeated, with fresh ids and times.

    Record ``i`` carries the label and predictions of sample record ``i % 6000``, the id
    ``r-{i+1:07d}`` and the time ``10:00:00.250Z + i * 250 ms``, so ids stay unique and times
    increase however far the stream is scaled.
    """
    sample = sample_records()
    # The label and predictions of each sample record, as the JSON text that follows "ts".
    tails = [
        orjson.dumps({"label": r["label"], "predictions": r["predictions"]})[1:] for r in sample
    ]
    origin = np.datetime64(STREAM_START.replace(tzinfo=None), "ms")
    for lo in range(start, start + n, 10_000):
        hi = min(lo + 10_000, start + n)
        stamps = np.datetime_as_string(origin + np.arange(lo, hi) * STREAM_STEP_MS, unit="ms")
        for i, stamp in zip(range(lo, hi), stamps.tolist(), strict=True):
            yield (f'{{"id":"r-{i + 1:07d}","ts":"{stamp}Z",'.encode() + tails[i % len(tails)])


def scaled_stream(n: int) -> Path:
    """A JSON-lines file of ``n`` scaled records, written once into bench/results/cache."""
    return cached_stream("stream-v2", n, scaled_records)


def bench_env(**settings: object) -> dict[str, str]:
    """This process's environment without CONFUSION_* settings, plus ``settings`` as CONFUSION_*.

    The Kafka/Elasticsearch addresses are kept: end-to-end runs need them.
    """
    keep = {"CONFUSION_KAFKA_BOOTSTRAP", "CONFUSION_ES_URL"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFUSION_") or k in keep}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({f"CONFUSION_{key.upper()}": str(value) for key, value in settings.items()})
    env.setdefault("CONFUSION_PROGRESS", "off")
    return env


def model_columns(
    truth: Sequence[str],
    pred: Sequence[str],
    ids: Sequence[str | int],
    ts: Sequence[int],
    model: str = "m",
) -> ModelColumns:
    """One model's records in the shape `parse_batch` hands a window: batch-local label codes."""
    table: dict[str, int] = {}
    t = [table.setdefault(label, len(table)) for label in truth]
    p = [table.setdefault(label, len(table)) for label in pred]
    return ModelColumns(
        model,
        list(table),
        np.asarray(t, dtype=np.int32),
        np.asarray(p, dtype=np.int32),
        list(ids),
        np.asarray(ts, dtype=np.int64),
    )


WIDE_MODELS = 10
WIDE_CLASSES = 20


def wide_records(n: int, seed: int = 17) -> Iterator[bytes]:
    """``n`` records of `WIDE_MODELS` models, each a score map over `WIDE_CLASSES` classes.

    Labels ``c00`` .. ``c19``; each model's top score (0.900-0.999, never tied) is the truth with
    probability 0.6 + 0.03 * model, the others score 0.000-0.899. Ids and times as
    `scaled_records`; the same seed gives the same bytes.
    """
    rng = np.random.default_rng(seed)
    names = [f"c{k:02d}" for k in range(WIDE_CLASSES)]
    keys = [f'"{name}":'.encode() for name in names]
    low = [f"0.{k:03d}".encode() for k in range(1000)]
    origin = np.datetime64(STREAM_START.replace(tzinfo=None), "ms")
    for lo in range(0, n, 2_000):
        hi = min(lo + 2_000, n)
        m = hi - lo
        truth = rng.integers(0, WIDE_CLASSES, m)
        stamps = np.datetime_as_string(origin + np.arange(lo, hi) * STREAM_STEP_MS, unit="ms")
        maps = []
        for k in range(WIDE_MODELS):
            right = rng.random(m) < 0.6 + 0.03 * k
            pred = np.where(right, truth, rng.integers(0, WIDE_CLASSES, m))
            scores = rng.integers(0, 900, (m, WIDE_CLASSES))
            scores[np.arange(m), pred] = rng.integers(900, 1000, m)
            maps.append(
                [
                    b"{" + b",".join(key + low[s] for key, s in zip(keys, row, strict=True)) + b"}"
                    for row in scores.tolist()
                ]
            )
        for j in range(m):
            i = lo + j
            entries = b",".join(b'"model%d":' % (k + 1) + maps[k][j] for k in range(WIDE_MODELS))
            yield (
                (
                    f'{{"id":"r-{i + 1:07d}","ts":"{stamps[j]}Z","label":"{names[truth[j]]}",'
                    f'"predictions":{{'
                ).encode()
                + entries
                + b"}}"
            )


def cached_stream(name: str, n: int, lines: Callable[[int], Iterator[bytes]]) -> Path:
    """A JSON-lines file of ``n`` records from ``lines``, written once into bench/results/cache."""
    path = CACHE / f"{name}-{n}.jsonl"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        chunk: list[bytes] = []
        for line in lines(n):
            chunk.append(line)
            if len(chunk) == 10_000:
                f.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            f.write(b"\n".join(chunk) + b"\n")
    tmp.replace(path)
    return path
