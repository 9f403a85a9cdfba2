"""State: bytes held per model window, snapshot size, and recovery time, for 1e3..1e6 records.

In process: one model's `CountWindow` is filled with ``size`` records of the sample stream (ids and
timestamps made fresh per batch, as the parser would), then measured three ways: its own
``nbytes()``, the heap it retains according to tracemalloc (allocations still alive after the
inputs are dropped), and the pickled size of one ``snapshot()`` (what Bytewax stores per model).

Recovery: the real job (``python -m bytewax.run flows.confusion``, JSON-lines sink, recovery on,
snapshot every second) reads ``size + 1,000`` records to the end of its file. Then, each round,
the file grows by 10,000 records, the job restarts, and the time from launching the process to
its first new document (the document's ``emitted_at``) is taken; the job is SIGKILLed as soon as
that document is on disk, so every later round is a restart after a crash.

    python bench/state.py [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import gc
import json
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
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
    command_line,
    finish,
    model_columns,
    num,
    parser,
    sample_records,
    scaled_records,
    table,
)
from flows.parsing.checks import entry_prediction
from flows.windows.count import CountWindow

BATCH = 1000
GROW = 10_000
MB = 1 << 20


def fill(size: int, sample: list[dict[str, Any]]) -> tuple[CountWindow, int, int]:
    """A window of ``size`` records of model1; the heap it retains and the peak while filling."""
    truth = [r["label"] for r in sample]
    pred = [entry_prediction(r["predictions"]["model1"])[0] for r in sample]
    n = len(sample)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    window = CountWindow(size)
    for lo in range(0, size, BATCH):
        hi = min(lo + BATCH, size)
        ids = [f"r-{i + 1:07d}" for i in range(lo, hi)]
        ts = [1_795_341_600_250 + 250 * i for i in range(lo, hi)]
        window.add(
            model_columns(
                [truth[i % n] for i in range(lo, hi)], [pred[i % n] for i in range(lo, hi)], ids, ts
            )
        )
        del ids, ts
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return window, current - base, peak - base


def measure_memory(size: int, sample: list[dict[str, Any]]) -> dict[str, float]:
    window, retained, peak = fill(size, sample)
    start = time.perf_counter()
    blob = pickle.dumps(window.snapshot())
    snap_ms = 1000 * (time.perf_counter() - start)
    start = time.perf_counter()
    restored = CountWindow.restore(pickle.loads(blob))
    restore_ms = 1000 * (time.perf_counter() - start)
    a, b = window.view(), restored.view()
    if (a.labels, a.matrix.tolist(), a.first, a.last) != (
        b.labels,
        b.matrix.tolist(),
        b.first,
        b.last,
    ):
        raise AssertionError(f"window of {size:,}: restore(snapshot()) differs")
    return {
        "size": size,
        "nbytes": window.nbytes(),
        "retained": retained,
        "peak": peak,
        "pickled": len(blob),
        "snapshot_ms": snap_ms,
        "restore_ms": restore_ms,
    }


# ---------------------------------------------------------------- recovery


def _append(path: Path, start: int, n: int) -> None:
    with path.open("ab") as f:
        f.writelines(line + b"\n" for line in scaled_records(n, start))


def _first_new(
    output: Path, since_ms: int, proc: subprocess.Popen[bytes], timeout: float
) -> int | None:
    """The earliest ``emitted_at`` (epoch ms) >= since_ms in ``output``, once one is on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _scan(output, since_ms)
        if found is not None:
            return found
        if proc.poll() is not None:
            return _scan(output, since_ms)
        time.sleep(0.02)
    return None


def _scan(output: Path, since_ms: int) -> int | None:
    best = None
    if not output.exists():
        return None
    with output.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            stamp = _epoch_ms(json.loads(line)["emitted_at"])
            if stamp >= since_ms and (best is None or stamp < best):
                best = stamp
    return best


def _epoch_ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def measure_recovery(size: int, rounds: int, scratch: Path) -> dict[str, Any]:
    """Fill the job's windows to ``size`` (run to end of file), then restart ``rounds`` times."""
    db = scratch / f"recovery-{size}"
    db.mkdir()
    subprocess.run([PYTHON, "-m", "bytewax.recovery", str(db), "1"], check=True, cwd=ROOT)
    data = scratch / f"input-{size}.jsonl"
    output = scratch / f"documents-{size}.jsonl"
    data.unlink(missing_ok=True)
    written = size + BATCH
    _append(data, 0, written)
    env = bench_env(
        source="file",
        input=data,
        window_size=size,
        emit_every=100,
        output=output,
        dead_letter_path=scratch / "dead.jsonl",
    )
    cmd = [PYTHON, "-m", "bytewax.run", "flows.confusion", "-r", str(db), "-s", "1", "-b", "0"]
    start = time.perf_counter()
    subprocess.run(
        cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    fill_s = time.perf_counter() - start
    db_bytes = sum(p.stat().st_size for p in db.iterdir())
    times = []
    for _ in range(rounds):
        _append(data, written, GROW)
        written += GROW
        since = int(time.time() * 1000)
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        first = _first_new(output, since, proc, timeout=120)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if first is None:
            raise RuntimeError(f"window {size:,}: no new document within 120 s of a restart")
        times.append((first - since) / 1000)
    return {"size": size, "fill_s": fill_s, "db_bytes": db_bytes, "restart_s": times}


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = [1_000, 10_000] if args.quick else [1_000, 100_000, 1_000_000]
    report = Report(
        "state", "State: bytes per model window and recovery time", command_line("state.py", argv)
    )
    sample = sample_records()
    memory = [measure_memory(size, sample) for size in sizes]
    report.sections.append(
        Section(
            "One model's window (3 models hold three of these)",
            table(
                (
                    "window (records)",
                    "nbytes()",
                    "tracemalloc retained",
                    "peak while filling",
                    "pickled snapshot",
                    "snapshot+pickle ms",
                    "unpickle+restore ms",
                ),
                [
                    (
                        f"{m['size']:,}",
                        f"{m['nbytes'] / MB:.3f} MB",
                        f"{m['retained'] / MB:.3f} MB",
                        f"{m['peak'] / MB:.3f} MB",
                        f"{m['pickled'] / MB:.3f} MB",
                        num(m["snapshot_ms"], 1),
                        num(m["restore_ms"], 1),
                    )
                    for m in memory
                ],
            ),
            [
                "tracemalloc retained: heap still allocated after filling, inputs dropped and gc run.",
                "Record ids are `r-0000001`-style strings and times step by 250 ms, as in the "
                "scaled sample stream.",
            ],
        )
    )
    biggest = memory[-1]
    if biggest["size"] >= 1_000_000:
        held = max(biggest["nbytes"], biggest["retained"])
        report.targets.append(
            Target(
                "a 1,000,000-record window under 4 MB of state per model",
                f"nbytes {biggest['nbytes'] / MB:.2f} MB, tracemalloc {biggest['retained'] / MB:.2f} "
                f"MB, pickled snapshot {biggest['pickled'] / MB:.2f} MB",
                held < 4 * MB,
            )
        )
    rows = []
    recoveries = []
    with tempfile.TemporaryDirectory(prefix="confusion-state-") as tmp:
        for size in sizes[:1] if args.quick else sizes:
            rec = measure_recovery(size, repeats, Path(tmp))
            recoveries.append(rec)
            stat = Stat.of(rec["restart_s"])
            rows.append(
                (
                    f"{size:,}",
                    f"{rec['fill_s']:.1f}",
                    f"{rec['db_bytes'] / MB:.2f} MB",
                    f"{stat.median:.2f}",
                    f"{stat.low:.2f}–{stat.high:.2f}",
                )
            )
            print(f"  recovery, window {size:,}: {stat.median:.2f} s", file=sys.stderr, flush=True)
    report.sections.append(
        Section(
            f"Recovery of the real job (3 models), restart -> first new document, median of "
            f"{repeats}",
            table(("window (records)", "first run s", "recovery db", "restart s", "min–max"), rows),
            [
                "restart s: from launching `python -m bytewax.run flows.confusion -r DB -s 1 -b 0` to "
                "the `emitted_at` of its first new document; it includes interpreter start-up and "
                "imports (~1 s here), loading the snapshots and rebuilding the windows.",
                "Rounds after the first restart after a SIGKILL.",
            ],
        )
    )
    report.data = {"memory": memory, "recovery": recoveries}
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
