"""Scores: the whole job with score statistics on and off; the state of a window with scores.

Job: the real dataflow (``python -m bytewax.run bench.flow_job``, file source, documents to the
discard sink), window 1,000, emit 100, on a stream where all three models send a score map over
three classes on every record (generated here with full-precision scores, cached under
bench/results/cache). The same stream runs with ``CONFUSION_SCORE_BINS=100`` (the default) and
``=0`` (score statistics off), repeats interleaved so a noisy neighbour hurts both alike. Rates
are input records over the in-process time (flow built -> run ended), as in bench/flow.py.

State: one model's count window of 1,000,000 records, fed through ``window.add`` (the job's path)
with three-class score maps, measured by its own ``nbytes()`` (confusion part and score part),
by the heap it retains (tracemalloc) and by its pickled snapshot; the same window without score
maps alongside.

    python bench/scores.py [--quick] [--repeats N] [--records N] [--json PATH]
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    CACHE,
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
    table,
)

CLASSES = ("A", "B", "C")
MODELS = ("m1", "m2", "m3")
SKILL = (0.9, 0.75, 0.6)
WINDOW = 1000
EMIT = 100
BINS = 100
STATE_SIZE = 1_000_000
MB = 1 << 20


# ---------------------------------------------------------------- the stream


def score_rows(
    rng: np.random.Generator, truth: np.ndarray[Any, Any], skill: float
) -> np.ndarray[Any, Any]:
    """Score maps (rows sum to 1) whose arg-max is the truth with probability about ``skill``."""
    n = len(truth)
    raw = rng.random((n, len(CLASSES)))
    right = rng.random(n) < skill
    target = np.where(right, truth, (truth + rng.integers(1, len(CLASSES), n)) % len(CLASSES))
    raw[np.arange(n), target] += 1.0
    return raw / raw.sum(axis=1, keepdims=True)


def score_lines(start: int, n: int, seed: int = 13) -> list[bytes]:
    """Records ``start .. start + n - 1``: every model sends a three-class score map."""
    rng = np.random.default_rng([seed, start])
    truth = rng.integers(0, len(CLASSES), n)
    maps = [score_rows(rng, truth, skill).tolist() for skill in SKILL]
    lines = []
    for i in range(n):
        preds = {m: dict(zip(CLASSES, maps[k][i], strict=True)) for k, m in enumerate(MODELS)}
        lines.append(
            orjson.dumps(
                {
                    "id": f"s-{start + i + 1:07d}",
                    "ts": 1_795_341_600_250 + 250 * (start + i),
                    "label": CLASSES[truth[i]],
                    "predictions": preds,
                }
            )
        )
    return lines


def score_stream(n: int) -> Path:
    """A JSON-lines file of ``n`` such records, written once into bench/results/cache."""
    path = CACHE / f"scores-v1-{n}.jsonl"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        for lo in range(0, n, 10_000):
            f.write(b"\n".join(score_lines(lo, min(10_000, n - lo))) + b"\n")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------- the job, on and off


def run_job(path: Path, bins: int, scratch: Path) -> tuple[float, float, int]:
    """(seconds, CPU seconds, documents) of one run of the real job on ``path``."""
    result = scratch / "result.jsonl"
    result.unlink(missing_ok=True)
    env = bench_env(
        source="file",
        input=path,
        window_size=WINDOW,
        emit_every=EMIT,
        score_bins=bins,
        output=scratch / "documents.jsonl",
        dead_letter_path=scratch / "dead.jsonl",
        summary="false",
    )
    env.update(BENCH_RESULT=str(result), BENCH_SINK="discard")
    cmd = [PYTHON, "-m", "bytewax.run", "bench.flow_job"]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.decode()[-3000:]}")
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    seconds = max(r["ended"] for r in lines) - min(r["built"] for r in lines)
    return seconds, sum(r["cpu"] for r in lines), sum(r["documents"] for r in lines)


def documents_have_scores(path: Path, scratch: Path) -> None:
    """A short run with the JSON-lines sink: every document carries ``scores`` (bins on)."""
    out = scratch / "check.jsonl"
    env = bench_env(
        source="file",
        input=path,
        window_size=WINDOW,
        emit_every=EMIT,
        score_bins=BINS,
        output=out,
        dead_letter_path=scratch / "dead.jsonl",
        summary="false",
    )
    env.update(BENCH_SINK="real")
    subprocess.run(
        [PYTHON, "-m", "bytewax.run", "bench.flow_job"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    if not docs or not all(d.get("scores") and d["scores"]["count"] for d in docs):
        raise AssertionError("a document of the score stream lacks its scores object")


# ---------------------------------------------------------------- state


def window_state(size: int, with_scores: bool) -> dict[str, float]:
    """nbytes, retained heap and pickled snapshot of one model's window of ``size`` records."""
    from flows.parsing.batches import ModelColumns
    from flows.windows.count import CountPolicy

    rng = np.random.default_rng(7)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    window = CountPolicy(size, score_bins=BINS if with_scores else 0).new()
    batch = 10_000
    for lo in range(0, size, batch):
        n = min(batch, size - lo)
        truth = rng.integers(0, 3, n)
        scores = score_rows(rng, truth, 0.8)
        pred = scores.argmax(axis=1)
        cols = ModelColumns(
            "m1",
            list(CLASSES),
            truth.astype(np.int32),
            pred.astype(np.int32),
            [f"s-{lo + i + 1:07d}" for i in range(n)],
            1_795_341_600_250 + 250 * np.arange(lo, lo + n, dtype=np.int64),
            score_keys=list(CLASSES) if with_scores else [],
            scores=scores if with_scores else None,
        )
        window.add(cols, EMIT)
        del cols, scores
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    score_part = window.scores.nbytes() if window.scores is not None else 0
    return {
        "size": size,
        "nbytes": window.nbytes(),
        "scores_nbytes": score_part,
        "retained": retained,
        "pickled": len(pickle.dumps(window.snapshot())),
    }


# ---------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--records", type=int, default=None, help="records of the job runs (default 1,000,000)"
    )
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    records = args.records or (20_000 if args.quick else 1_000_000)
    state_size = 20_000 if args.quick else STATE_SIZE
    report = Report(
        "scores",
        "Scores: score statistics on and off, and their state",
        command_line("scores.py", argv),
    )

    runs: dict[int, list[tuple[float, float, int]]] = {BINS: [], 0: []}
    with tempfile.TemporaryDirectory(prefix="confusion-bench-") as tmp:
        scratch = Path(tmp)
        path = score_stream(records)
        documents_have_scores(score_stream(2_000), scratch)
        path.read_bytes()  # warm the page cache
        for r in range(repeats):
            for bins in (BINS, 0) if r % 2 == 0 else (0, BINS):
                run = run_job(path, bins, scratch)
                expected = len(MODELS) * -(-records // EMIT)
                if run[2] != expected:
                    raise AssertionError(f"bins {bins}: {run[2]} documents, expected {expected}")
                runs[bins].append(run)
                print(
                    f"  [{r + 1}/{repeats}] bins {bins}: {num(records / run[0])} records/s",
                    file=sys.stderr,
                    flush=True,
                )
    rate = {b: Stat.of(s for s, _, _ in done).rate(records) for b, done in runs.items()}
    cpu = {b: Stat.of(c for _, c, _ in done).rate(records) for b, done in runs.items()}
    share = rate[BINS].median / rate[0].median
    report.sections.append(
        Section(
            f"Whole job, file -> discard, {records:,} records x 3 models with score maps, "
            f"window {WINDOW}, emit {EMIT}",
            table(
                ["score statistics", "records/s (median)", "min–max", "per CPU-s", "runs"],
                [
                    [
                        f"on (CONFUSION_SCORE_BINS={BINS})",
                        num(rate[BINS].median),
                        f"{num(rate[BINS].low)}–{num(rate[BINS].high)}",
                        num(cpu[BINS].median),
                        len(runs[BINS]),
                    ],
                    [
                        "off (CONFUSION_SCORE_BINS=0)",
                        num(rate[0].median),
                        f"{num(rate[0].low)}–{num(rate[0].high)}",
                        num(cpu[0].median),
                        len(runs[0]),
                    ],
                ],
            ),
            [f"on / off = {share:.2f} (medians of {repeats} interleaved runs each)"],
        )
    )
    report.targets.append(
        Target(
            "with score statistics at least 75% of the same run without",
            f"{share:.0%}",
            share >= 0.75,
        )
    )

    states = [window_state(state_size, True), window_state(state_size, False)]
    report.sections.append(
        Section(
            f"State of one model's count window of {state_size:,} records, 3 classes",
            table(
                [
                    "window",
                    "nbytes (MB)",
                    "of which scores",
                    "retained heap (MB)",
                    "pickled snapshot (MB)",
                    "bytes per record",
                ],
                [
                    [
                        name,
                        num(s["nbytes"] / MB, 2),
                        num(s["scores_nbytes"] / MB, 2),
                        num(s["retained"] / MB, 2),
                        num(s["pickled"] / MB, 2),
                        num(s["nbytes"] / s["size"], 1),
                    ]
                    for name, s in zip(("with score maps", "labels only"), states, strict=True)
                ],
            ),
            [
                "Per scored record: one byte per class (bin and truth), 8 for the exact Brier "
                "term (its sign and inf/NaN carry the correct and out-of-range flags), 4 for the "
                "top-label confidence; the reliability bin is derived from the class codes."
            ],
        )
    )
    with_scores = states[0]["nbytes"] / MB
    report.targets.append(
        Target(
            f"state of a {state_size:,}-record window with 3 classes and score maps under 8 MB "
            "per model",
            f"{with_scores:.1f} MB (scores {states[0]['scores_nbytes'] / MB:.1f} MB)",
            with_scores < 8 if state_size == STATE_SIZE else None,
        )
    )
    report.data = {"rates": {str(b): rate[b].median for b in rate}, "states": states}
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
