"""Flow: records/s of the whole job (file source -> sink), against a naive single-loop consumer.

The job is the real one (`bench/flow_job.py` = `build_flow` from the environment, with the
documents output swapped for a sink that counts and drops, or kept as the JSON-lines sink), run as
``python -m bytewax.run bench.flow_job [-w 2]`` or ``python -m bytewax.testing ... -p 2``. The input
is the sample stream (`flows.demo.sample_lines`) scaled up with fresh ids and timestamps (cached
under bench/results/cache). Repeats are interleaved, so a noisy neighbour hurts every contender
alike.

Rates are input records over the in-process time (flow built -> run ended, which leaves out
interpreter start and imports; the naive loop likewise is timed from file open to end). "per
CPU-s" is records over the in-process CPU time (all threads and processes added up), a figure
that a busy machine disturbs less than wall time.

    python bench/flow.py [--quick] [--repeats N] [--records N] [--json PATH]
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    ROOT,
    Report,
    Section,
    Stat,
    Target,
    bench_env,
    command_line,
    finish,
    num,
    parser,
    ratio,
    sample_file,
    scaled_stream,
    table,
)
from bench.naive_consumer import consume

WINDOW = 1000
MODELS = 3


@dataclass(frozen=True, slots=True)
class Config:
    """One contender at one emission rate."""

    kind: Literal["ours", "naive"]
    emit: int
    records: int
    workers: int = 1
    processes: int = 1
    sink: Literal["discard", "jsonl"] = "discard"

    @property
    def label(self) -> str:
        if self.kind == "naive":
            return "naive loop (json.loads, deque + Counter)"
        how = (
            f"{self.processes} processes (bytewax.testing -p {self.processes})"
            if self.processes > 1
            else f"-w {self.workers}"
        )
        return f"ours, {how}, {self.sink} sink"

    def expected_documents(self) -> int:
        return MODELS * math.ceil(self.records / self.emit)


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float  # in-process wall time
    cpu: float  # in-process CPU time, all threads (and processes) added up
    wall: float  # including interpreter start-up and imports
    documents: int


def run_ours(cfg: Config, path: Path, scratch: Path) -> Run:
    result = scratch / "result.jsonl"
    output = scratch / "documents.jsonl"
    result.unlink(missing_ok=True)
    env = bench_env(
        source="file",
        input=path,
        window_size=WINDOW,
        emit_every=cfg.emit,
        output=output,
        dead_letter_path=scratch / "dead.jsonl",
    )
    env.update(BENCH_RESULT=str(result), BENCH_SINK="discard" if cfg.sink == "discard" else "real")
    if cfg.processes > 1:
        cmd = [
            PYTHON,
            "-m",
            "bytewax.testing",
            "bench.flow_job",
            "-p",
            str(cfg.processes),
            "-w",
            str(cfg.workers),
        ]
    else:
        cmd = [PYTHON, "-m", "bytewax.run", "bench.flow_job", "-w", str(cfg.workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{err.decode()[-3000:]}")
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    seconds = max(r["ended"] for r in lines) - min(r["built"] for r in lines)
    if cfg.sink == "discard":
        documents = sum(r["documents"] for r in lines)
    else:
        with output.open("rb") as f:
            documents = sum(1 for _ in f)
    return Run(seconds, sum(r["cpu"] for r in lines), wall, documents)


def run_naive(cfg: Config, path: Path) -> Run:
    cmd = [
        PYTHON,
        str(ROOT / "bench" / "naive_consumer.py"),
        str(path),
        "--window",
        str(WINDOW),
        "--emit-every",
        str(cfg.emit),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code})")
    res = json.loads(out)
    return Run(res["seconds"], res["cpu"], wall, res["documents"])


def check_same_work(scratch: Path) -> int:
    """The naive loop's documents equal the job's (all but emitted_at) on the sample stream.

    The job runs with two workers and the JSON-lines sink, so that path is exercised too.
    """
    cfg = Config("ours", 100, 6000, workers=2, sink="jsonl")
    sample = sample_file()
    run_ours(cfg, sample, scratch)
    ours = {
        (d["model"], d["seq"]): d
        for d in map(json.loads, (scratch / "documents.jsonl").read_text().splitlines())
    }
    naive: dict[tuple[str, int], dict[str, Any]] = {}
    consume(sample, WINDOW, 100, lambda d: naive.setdefault((d["model"], d["seq"]), d))
    if ours.keys() != naive.keys():
        raise AssertionError(f"naive loop emitted {len(naive)} documents, the job {len(ours)}")
    for key, doc in ours.items():
        if not _same(_strip(doc), _strip(naive[key])):
            raise AssertionError(f"naive document {key} differs from the job's")
    return len(ours)


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "emitted_at"}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= 1e-9
    return bool(a == b)


def configs(quick: bool, records: int) -> list[Config]:
    if quick:
        return [Config("ours", 100, records), Config("naive", 100, records)]
    few = max(records // 100, 1)  # emitting on every record is ~100x the document work
    out = []
    for emit, n in ((1, few), (100, records), (1000, records)):
        out += [Config("ours", emit, n), Config("ours", emit, n, workers=2)]
        if emit == 100:
            out += [
                Config("ours", emit, n, processes=2),
                Config("ours", emit, n, sink="jsonl"),
                Config("ours", emit, n, workers=2, sink="jsonl"),
            ]
        out.append(Config("naive", emit, n))
    return out


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--records",
        type=int,
        default=None,
        help="records at emit 100 and 1000 (default 1,000,000; emit 1 gets 1/100)",
    )
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    records = args.records or (10_000 if args.quick else 1_000_000)
    report = Report(
        "flow", "Flow: the whole job, file source -> sink", command_line("flow.py", argv)
    )
    runs: dict[Config, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="confusion-bench-") as tmp:
        scratch = Path(tmp)
        checked = check_same_work(scratch)
        todo = configs(args.quick, records)
        paths = {n: scaled_stream(n) for n in sorted({c.records for c in todo})}
        for path in paths.values():  # warm the page cache: every contender reads from memory
            path.read_bytes()
        for r in range(repeats):
            # Alternate the order, so a slow spell of the machine does not always hit the same
            # contender first.
            for cfg in todo if r % 2 == 0 else todo[::-1]:
                run = (
                    run_ours(cfg, paths[cfg.records], scratch)
                    if cfg.kind == "ours"
                    else run_naive(cfg, paths[cfg.records])
                )
                if run.documents != cfg.expected_documents():
                    raise AssertionError(
                        f"{cfg.label} emit {cfg.emit}: {run.documents} "
                        f"documents, expected {cfg.expected_documents()}"
                    )
                runs.setdefault(cfg, []).append(run)
                print(
                    f"  [{r + 1}/{repeats}] emit {cfg.emit} {cfg.label}: "
                    f"{num(cfg.records / run.seconds)} records/s",
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    rate: dict[Config, float] = {}
    for cfg, done in runs.items():
        stat = Stat.of(r.seconds for r in done).rate(cfg.records)
        cpu = Stat.of(r.cpu for r in done).rate(cfg.records)
        rate[cfg] = stat.median
        baseline = next(c for c in runs if c.kind == "naive" and c.emit == cfg.emit)
        naive_rate = Stat.of(r.seconds for r in runs[baseline]).rate(baseline.records).median
        rows.append(
            (
                cfg.emit,
                cfg.label,
                f"{cfg.records:,}",
                f"{done[0].documents:,}",
                num(stat.median),
                f"{num(stat.low)}–{num(stat.high)}",
                num(cpu.median),
                f"{Stat.of(r.wall for r in done).median:.2f}",
                ratio(stat.median, naive_rate),
            )
        )
    report.sections.append(
        Section(
            f"3 models x 2 classes, window {WINDOW:,}, median of {repeats} (interleaved)",
            table(
                (
                    "emit every",
                    "contender",
                    "records",
                    "documents",
                    "records/s",
                    "min–max",
                    "per CPU-s",
                    "wall s",
                    "vs naive",
                ),
                rows,
            ),
            [
                f"Same work: before timing, the naive loop's {checked} documents on the 6,000-record "
                "sample were checked equal to the job's (matrix, labels, window, metrics to 1e-9).",
                "records/s: in-process time; 'wall s' includes interpreter start-up and imports.",
                "per CPU-s: records per in-process CPU-second (all threads and processes added).",
            ],
        )
    )
    main_cfg = next(
        (
            c
            for c in runs
            if c.kind == "ours"
            and c.emit == 100
            and c.workers == 1
            and c.processes == 1
            and c.sink == "discard"
        ),
        None,
    )
    naive_cfg = next((c for c in runs if c.kind == "naive" and c.emit == 100), None)
    if main_cfg and naive_cfg:
        ours, naive = rate[main_cfg], rate[naive_cfg]
        report.targets += [
            Target(
                "ours >= 3x the naive loop (emit 100, one worker)",
                f"{ours / naive:.2f}x ({num(ours)} vs {num(naive)} records/s)",
                ours >= 3 * naive,
            ),
            Target(
                ">= 300,000 records/s in one process (3 models, emit 100)",
                f"{num(ours)} records/s",
                ours >= 300_000,
            ),
        ]
        report.data = {"ours_w1_emit100": ours, "naive_emit100": naive}
    if not args.quick:
        report.notes.append(
            f"Emit every 1 runs on {max(records // 100, 1):,} records (a "
            "document per record per model is 100x the document work of emit "
            "100, and would take minutes on 1,000,000 records)."
        )
    report.notes.append(
        "The input is the sample stream repeated with fresh ids and times, as "
        "compact JSON; it has no bad record, so no dead letters are written."
    )
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
