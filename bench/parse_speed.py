"""Parse speed: the whole job against its decode-only bound and the naive loop, in one run.

For each input shape, three contenders read the same file, each as its own process and timed
from spawn to exit (interpreter start and imports included), repeats interleaved:

- the job: ``python -m bytewax.run flows.confusion``, file -> JSON-lines documents;
- the decode-only bound: `bench/decode_only.py`, the project's msgspec `Wire` decoder over the
  file in batches of CONFUSION_BATCH_SIZE, nothing else;
- the naive loop: `bench/naive_consumer.py` (json.loads, deque + Counter, the same documents).

Shapes: the sample stream scaled up (3 models: two score maps, one bare label; window 1,000,
emit every 100), 10 models x 20 classes of score maps, the sample with the weighted ensemble on,
and the sample with time windows. The job does the naive loop's work: score statistics, drift
detectors and alert rules off. Then scaling out: the sample stream cut into two files (two
input partitions), one process against two (``python -m bytewax.testing bench.parts_job -p``).

    python bench/parse_speed.py [--quick] [--repeats N] [--records N] [--only SHAPE]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    ROOT,
    Report,
    Section,
    Stat,
    Target,
    bench_env,
    cached_stream,
    command_line,
    finish,
    num,
    parser,
    scaled_records,
    scaled_stream,
    table,
    wide_records,
)
from flows.settings import accel_available

WINDOW = 1000
EMIT = 100
BATCH = 1000
DURATION_MS = 250_000  # 1,000 records of the sample stream (one every 250 ms)
WEIGHTS = "model1=0.5,model2=0.3,model3=0.2"


@dataclass(frozen=True, slots=True)
class Shape:
    """One input shape: its file, the job's settings and the naive loop's matching flags."""

    name: str
    title: str
    scale: int = 1  # records = the run's record count // scale
    settings: dict[str, object] = field(default_factory=dict)
    naive: tuple[str, ...] = ()

    def path(self, records: int) -> Path:
        if self.name == "wide":
            return cached_stream("wide-v1", records, wide_records)
        return scaled_stream(records)


SHAPES = (
    Shape("sample", "sample: 3 models (2 score maps, 1 bare label), window 1,000"),
    Shape("wide", "10 models x 20 classes, score maps, window 1,000", scale=10),
    Shape(
        "ensemble",
        f"sample + weighted ensemble ({WEIGHTS})",
        settings={"ensemble_weights": WEIGHTS},
        naive=("--ensemble", WEIGHTS),
    ),
    Shape(
        "time",
        f"sample, time windows of {DURATION_MS // 1000} s (1,000 records)",
        settings={"window_kind": "time", "window_duration": f"{DURATION_MS // 1000}s"},
        naive=("--duration-ms", str(DURATION_MS)),
    ),
)


@dataclass(frozen=True, slots=True)
class Run:
    wall: float  # spawn to exit
    cpu: float  # the process's user + system time
    documents: int


def _timed(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, bytes]:
    """Wall seconds from spawn to exit, the child's CPU seconds (user + system), its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd or ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, out


def job_env(shape: Shape, path: Path, scratch: Path, **extra: object) -> dict[str, str]:
    return bench_env(
        source="file",
        input=path,
        sink="jsonl",
        output=scratch / "documents.jsonl",
        dead_letter_path=scratch / "dead.jsonl",
        alerts_output=scratch / "alerts.jsonl",
        window_size=WINDOW,
        emit_every=EMIT,
        batch_size=BATCH,
        score_bins=0,
        drift_detector="off",
        alert_rules="none",
        **{**shape.settings, **extra},
    )


def run_job(
    shape: Shape, path: Path, scratch: Path, code: Path | None = None, accel: str = "auto"
) -> Run:
    """The job; ``code``: another checkout's ``flows`` instead of this one (an A/B baseline);
    ``accel``: its CONFUSION_ACCEL (``off``: the pure-Python parser)."""
    env = job_env(shape, path, scratch)
    if code is None:
        env["CONFUSION_ACCEL"] = accel
    else:
        env["PYTHONPATH"] = str(code)
    wall, cpu, _ = _timed([PYTHON, "-m", "bytewax.run", "flows.confusion"], env, code)
    with (scratch / "documents.jsonl").open("rb") as f:
        documents = sum(1 for _ in f)
    return Run(wall, cpu, documents)


def run_decode(path: Path) -> Run:
    cmd = [PYTHON, str(ROOT / "bench" / "decode_only.py"), str(path), "--batch", str(BATCH)]
    wall, cpu, _ = _timed(cmd)
    return Run(wall, cpu, 0)


def run_naive(shape: Shape, path: Path) -> Run:
    cmd = [
        PYTHON,
        str(ROOT / "bench" / "naive_consumer.py"),
        str(path),
        "--window",
        str(WINDOW),
        "--emit-every",
        str(EMIT),
        *shape.naive,
    ]
    wall, cpu, out = _timed(cmd)
    return Run(wall, cpu, json.loads(out)["documents"])


def small_input(shape: Shape, scratch: Path) -> Path:
    """A small input of the shape (6,000 sample records, 600 wide ones) for the same-work check."""
    n = 6000 // shape.scale
    path = scratch / f"check-{shape.name}.jsonl"
    lines = wide_records(n) if shape.name == "wide" else scaled_records(n)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def same_work(shape: Shape, path: Path, scratch: Path) -> int:
    """The naive loop's documents on ``path`` equal those the job just wrote (to 1e-9)."""
    from bench.flow import _same, _strip
    from bench.naive_consumer import consume

    ours = {
        (d["model"], d["seq"]): d
        for d in map(json.loads, (scratch / "documents.jsonl").read_text().splitlines())
    }
    naive: dict[tuple[str, int], dict[str, Any]] = {}
    weights = {name: float(w) for name, _, w in (p.partition("=") for p in WEIGHTS.split(","))}
    consume(
        path,
        WINDOW,
        EMIT,
        lambda d: naive.setdefault((d["model"], d["seq"]), d),
        duration_ms=DURATION_MS if shape.name == "time" else None,
        ensemble=weights if shape.name == "ensemble" else None,
    )
    if ours.keys() != naive.keys():
        raise AssertionError(f"{shape.name}: naive emitted {len(naive)} documents, job {len(ours)}")
    for key, doc in ours.items():
        if not _same(_strip(doc), _strip(naive[key])):
            raise AssertionError(f"{shape.name}: naive document {key} differs from the job's")
    return len(ours)


def split_file(path: Path, scratch: Path) -> list[Path]:
    """``path`` cut into two files of alternate blocks of 1,000 lines (two input partitions)."""
    parts = [scratch / "part-0.jsonl", scratch / "part-1.jsonl"]
    lines = path.read_bytes().splitlines(keepends=True)
    with parts[0].open("wb") as a, parts[1].open("wb") as b:
        for k, lo in enumerate(range(0, len(lines), 1000)):
            (a if k % 2 == 0 else b).write(b"".join(lines[lo : lo + 1000]))
    return parts


def run_parts(processes: int, parts: list[Path], scratch: Path) -> Run:
    env = job_env(SHAPES[0], parts[0], scratch)
    env["BENCH_PARTS"] = os.pathsep.join(map(str, parts))
    cmd = [PYTHON, "-m", "bytewax.testing", "bench.parts_job", "-p", str(processes), "-w", "1"]
    wall, cpu, _ = _timed(cmd, env)
    with (scratch / "documents.jsonl").open("rb") as f:
        documents = sum(1 for _ in f)
    return Run(wall, cpu, documents)


def _rate(records: int, runs: list[Run]) -> tuple[float, float]:
    """Median records/s over wall time and over CPU time."""
    wall = Stat.of(r.wall for r in runs).median
    cpu = Stat.of(r.cpu for r in runs).median
    return records / wall, records / cpu if cpu else 0.0


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=None, help="sample-shape records (1,000,000)")
    p.add_argument("--only", action="append", default=None, help="shape(s) to run")
    p.add_argument("--no-scaling", action="store_true", help="leave out the 2-process run")
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a directory holding another version's flows/ package: its job runs too (A/B)",
    )
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    records = args.records or (6_000 if args.quick else 1_000_000)
    shapes = [s for s in SHAPES if not args.only or s.name in args.only]
    report = Report(
        "parse_speed",
        "Parse speed: the job against its decode-only bound and the naive loop",
        command_line("parse_speed.py", argv),
    )
    load = os.getloadavg()
    rows: list[tuple[str, ...]] = []
    baseline_rows: list[tuple[str, ...]] = []
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="confusion-parse-") as tmp:
        scratch = Path(tmp)
        checked: dict[str, int] = {}
        if args.quick:  # the timed input is the small one: its first job run is checked
            records = 6000
            paths = {s.name: small_input(s, scratch) for s in shapes}
        else:
            for s in shapes:
                small = small_input(s, scratch)
                run_job(s, small, scratch)
                checked[s.name] = same_work(s, small, scratch)
            paths = {s.name: s.path(records // s.scale) for s in shapes}
        for path in paths.values():  # warm the page cache: every contender reads from memory
            path.read_bytes()
        runs: dict[tuple[str, str], list[Run]] = {}
        # With the compiled decoder installed the job runs with it (CONFUSION_ACCEL=on: its
        # absence would stop the run) and again without it, the pure-Python reference.
        compiled = accel_available()
        kinds = (
            ("job", "decode", "naive")
            + (("pure",) if compiled else ())
            + (("baseline",) if args.baseline else ())
        )
        todo = [(s, kind) for s in shapes for kind in kinds]
        for r in range(repeats):
            for shape, kind in todo if r % 2 == 0 else todo[::-1]:
                path = paths[shape.name]
                if kind == "job":
                    run = run_job(shape, path, scratch, accel="on" if compiled else "off")
                    if args.quick and shape.name not in checked:
                        checked[shape.name] = same_work(shape, path, scratch)
                elif kind == "baseline":
                    run = run_job(shape, path, scratch, args.baseline)
                elif kind == "pure":
                    run = run_job(shape, path, scratch, accel="off")
                elif kind == "decode":
                    run = run_decode(path)
                else:
                    run = run_naive(shape, path)
                runs.setdefault((shape.name, kind), []).append(run)
                print(
                    f"  [{r + 1}/{repeats}] {shape.name} {kind}: "
                    f"{num((records // shape.scale) / run.wall)} records/s "
                    f"(cpu {run.cpu:.2f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        for shape in shapes:
            n = records // shape.scale
            job, decode, naive = (runs[shape.name, k] for k in ("job", "decode", "naive"))
            if job[0].documents != naive[0].documents:
                raise AssertionError(
                    f"{shape.name}: job wrote {job[0].documents} documents, naive "
                    f"{naive[0].documents}"
                )
            (jw, jc), (dw, dc), (nw, nc) = (_rate(n, x) for x in (job, decode, naive))
            pw, pc = _rate(n, runs[shape.name, "pure"]) if compiled else (jw, jc)
            rows.append(
                (
                    shape.title,
                    f"{n:,}",
                    num(jw),
                    num(pw),
                    num(dw),
                    num(nw),
                    f"{jw / dw:.2f}x",
                    f"{jw / nw:.2f}x",
                    f"{pw / dw:.2f}x",
                    f"{pw / nw:.2f}x",
                    f"{jc / dc:.2f}x",
                    f"{jc / nc:.2f}x",
                )
            )
            data[shape.name] = {
                "job": jw,
                "job_python_parser": pw,
                "compiled_decoder": compiled,
                "decode": dw,
                "naive": nw,
                "job_cpu": jc,
                "job_python_parser_cpu": pc,
                "decode_cpu": dc,
                "naive_cpu": nc,
            }
            if args.baseline:
                bw, bc = _rate(n, runs[shape.name, "baseline"])
                baseline_rows.append(
                    (shape.title, num(bw), num(jw), f"{jw / bw:.2f}x", f"{jc / bc:.2f}x")
                )
                data[shape.name].update(baseline=bw, baseline_cpu=bc)
            report.targets += [
                Target(
                    f"{shape.name}: job >= 0.5x the decode-only rate (same run)",
                    f"{jw / dw:.2f}x ({num(jw)} vs {num(dw)} records/s; per CPU-s {jc / dc:.2f}x)",
                    jw >= 0.5 * dw,
                ),
                Target(
                    f"{shape.name}: job >= 3x the naive loop (same run)",
                    f"{jw / nw:.2f}x ({num(jw)} vs {num(nw)} records/s; per CPU-s {jc / nc:.2f}x)",
                    jw >= 3 * nw,
                ),
            ]
        report.sections.append(
            Section(
                f"Records/s, process start included, median of {repeats} (interleaved); "
                f"1-minute load {load[0]:.2f} at the start",
                table(
                    (
                        "shape",
                        "records",
                        "job",
                        "job, Python parser",
                        "decode only",
                        "naive loop",
                        "job / decode",
                        "job / naive",
                        "Python parser / decode",
                        "Python parser / naive",
                        "job / decode (CPU)",
                        "job / naive (CPU)",
                    ),
                    rows,
                ),
                [
                    "Each contender is its own process, timed from spawn to exit (start-up and "
                    "imports included); CPU columns compare records per CPU-second of the "
                    "process, which a busy machine disturbs less.",
                    (
                        "The job runs with the compiled decoder (accel/, CONFUSION_ACCEL=on); "
                        "'job, Python parser' is the same job with CONFUSION_ACCEL=off, the "
                        "pure-Python reference and the default where no Rust toolchain is."
                        if compiled
                        else "The compiled decoder is not installed here: the job ran with the "
                        "pure-Python parser (both job columns are that run)."
                    ),
                    "The job: file -> JSON-lines documents, CONFUSION_BATCH_SIZE=1000, score "
                    "statistics, drift detectors and alert rules off (the naive loop computes "
                    "none of them); the naive loop builds the same documents but writes none.",
                    "Same work: before timing, the naive loop's documents on a small input of "
                    "each shape were checked equal to the job's: "
                    + ", ".join(f"{k} {v}" for k, v in checked.items())
                    + " documents.",
                ],
            )
        )
        if baseline_rows:
            report.sections.append(
                Section(
                    f"A/B in the same run: the job before this work ({args.baseline}) and now",
                    table(
                        ("shape", "before", "now", "now / before", "now / before (CPU)"),
                        baseline_rows,
                    ),
                    ["Records/s, process start included, the same settings and input."],
                )
            )
        if not args.no_scaling and any(s.name == "sample" for s in shapes):
            parts = split_file(paths["sample"], scratch)
            scale: dict[int, list[Run]] = {}
            for r in range(repeats):
                for procs in (1, 2) if r % 2 == 0 else (2, 1):
                    scale.setdefault(procs, []).append(run_parts(procs, parts, scratch))
                    print(
                        f"  [{r + 1}/{repeats}] {procs} process(es): "
                        f"{num(records / scale[procs][-1].wall)} records/s",
                        file=sys.stderr,
                        flush=True,
                    )
            (w1, c1), (w2, c2) = _rate(records, scale[1]), _rate(records, scale[2])
            report.sections.append(
                Section(
                    "Scaling out: the sample stream as two files (two input partitions)",
                    table(
                        ("processes", "records/s", "per CPU-s", "vs 1 process"),
                        [
                            ("1 (bytewax.testing -p 1)", num(w1), num(c1), "1.00x"),
                            ("2 (bytewax.testing -p 2)", num(w2), num(c2), f"{w2 / w1:.2f}x"),
                        ],
                    ),
                    [
                        "Alternate blocks of 1,000 lines go to each file; every model has records "
                        "in both, so its columns cross between the processes to its window.",
                        "Wall time from spawn to exit, start-up included; per CPU-s adds up "
                        "both processes.",
                    ],
                )
            )
            data["scaling"] = {"p1": w1, "p2": w2}
            report.targets.append(
                Target(
                    "2 processes >= 1.7x one on a 2-partition input",
                    f"{w2 / w1:.2f}x ({num(w2)} vs {num(w1)} records/s)",
                    w2 >= 1.7 * w1,
                )
            )
    report.data = data
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
