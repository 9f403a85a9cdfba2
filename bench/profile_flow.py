"""Profile: where the job spends its time, sampled by py-spy on ``python -m bytewax.run``.

Runs the real job (`bench/flow_job.py`, discard sink, one worker, emit every 100) on the scaled
sample stream under ``py-spy record --format raw`` and summarises the samples taken while the
dataflow runs (start-up and imports are left out): self time by function and by line, and
inclusive time by function.

    python bench/profile_flow.py [--quick] [--records N] [--emit-every N] [--json PATH]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    ROOT,
    Report,
    Section,
    bench_env,
    command_line,
    finish,
    parser,
    scaled_stream,
    table,
)

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*):(?P<line>\d+)\)$")
_SITE = re.compile(r".*/site-packages/")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(PYTHON).parent))
    return found


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, file:line) of each frame, outermost first; paths shortened."""
    out = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw)
        if m is None:
            out.append((raw, "?"))
            continue
        file = _SITE.sub("", m["file"]).removeprefix(str(ROOT) + "/")
        out.append((f"{m['func']} ({file})", f"{file}:{m['line']}"))
    return out


PARSE, WINDOW, DOCS, IO = (
    "parse and validate",
    "window update",
    "documents and metrics",
    "source/sink connectors",
)
BYTEWAX = "Bytewax (Python side)"
# (file prefix as py-spy prints it, area): a sample goes to its innermost frame listed here.
AREAS = (
    ("flows/parsing/", PARSE),
    ("flows/windows/", WINDOW),
    ("flows/output/", DOCS),
    ("flows/connectors/", IO),
    ("bench/flow_job.py", IO),
    ("flows/telemetry.py", "telemetry"),
    ("flows/confusion.py", "flow glue"),
    ("operators/", BYTEWAX),
    ("inputs.py", BYTEWAX),
    ("outputs.py", BYTEWAX),
    ("dataflow.py", BYTEWAX),
    ("run.py", "Bytewax runtime (Rust, holding the GIL)"),
)


DECODE = "JSON decode (msgspec, in C)"


def area_of(frames: list[tuple[str, str]]) -> str:
    if frames and frames[-1][0].startswith("decode_batch "):
        return DECODE  # the one C call that decodes a batch (part of parsing)
    for _, where in reversed(frames):
        for prefix, area in AREAS:
            if where.startswith(prefix):
                return area
    return "other"


def summarise(raw: str) -> tuple[int, Counter[str], Counter[str], Counter[str], Counter[str]]:
    """Samples of the running dataflow: total, self by function, self by line, inclusive, area."""
    total = 0
    self_fn: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for row in raw.splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack or "_find_and_load" in stack or "_locate_dataflow" in stack:
            continue  # imports and building the flow, not the running dataflow
        n = int(count)
        frames = _frames(stack)
        total += n
        func, line = frames[-1]
        self_fn[func] += n
        self_line[f"{line} {func.split(' (')[0]}"] += n
        for name in {f for f, _ in frames}:
            inclusive[name] += n
        areas[area_of(frames)] += n
    return total, self_fn, self_line, inclusive, areas


def _rows(counts: Counter[str], total: int, top: int) -> list[tuple[str, str, str]]:
    return [(name, f"{n:,}", f"{100 * n / total:.1f}%") for name, n in counts.most_common(top)]


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=None, help="default 300,000 (quick 5,000)")
    p.add_argument("--emit-every", type=int, default=100)
    p.add_argument(
        "--lean",
        action="store_true",
        help="score statistics, drift detectors and alert rules off (bench/parse_speed.py's job)",
    )
    args = p.parse_args(argv)
    records = args.records or (5_000 if args.quick else 300_000)
    report = Report("profile", "Profile of the job (py-spy)", command_line("profile_flow.py", argv))
    spy = py_spy()
    if spy is None:
        report.skipped = "py-spy is not installed (pip install py-spy)"
        finish(report, args, started)
        return report
    path = scaled_stream(records)
    with tempfile.TemporaryDirectory(prefix="confusion-profile-") as tmp:
        out = Path(tmp) / "profile.txt"
        env = bench_env(
            source="file",
            input=path,
            emit_every=args.emit_every,
            dead_letter_path=Path(tmp) / "dead.jsonl",
            **(
                {"score_bins": 0, "drift_detector": "off", "alert_rules": "none"}
                if args.lean
                else {}
            ),
        )
        cmd = [
            spy,
            "record",
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--",
            PYTHON,
            "-m",
            "bytewax.run",
            "bench.flow_job",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            report.skipped = f"py-spy failed ({proc.returncode}): {proc.stderr[-500:]}"
            finish(report, args, started)
            return report
        raw = out.read_text()
    total, self_fn, self_line, inclusive, areas = summarise(raw)
    if total == 0:
        report.skipped = "py-spy took no sample of the running dataflow"
        finish(report, args, started)
        return report
    heading = f"{records:,} records, emit every {args.emit_every}, {total:,} samples at 200 Hz" + (
        "; score statistics, detectors and rules off" if args.lean else ""
    )
    report.sections += [
        Section(
            f"Where the time goes ({heading})",
            table(
                ("area (innermost frame of ours or Bytewax's)", "samples", "share"),
                _rows(areas, total, 12),
            ),
        ),
        Section(
            "Self time by function",
            table(("function (file)", "samples", "share"), _rows(self_fn, total, 15)),
        ),
        Section(
            "Self time by line", table(("line", "samples", "share"), _rows(self_line, total, 15))
        ),
        Section(
            "Inclusive time by function",
            table(("function (file)", "samples", "share"), _rows(inclusive, total, 20)),
        ),
    ]
    report.data = {
        "total": total,
        "areas": dict(areas),
        "self": dict(self_fn.most_common(40)),
        "lines": dict(self_line.most_common(40)),
        "inclusive": dict(inclusive.most_common(40)),
    }
    report.notes.append(
        "Samples of start-up and imports are left out; shares are of the "
        "samples taken while the dataflow ran (Python threads holding the GIL)."
    )
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
