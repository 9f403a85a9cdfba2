"""Delayed labels: the join path against the combined-record path, and the join's state.

1. Throughput, side by side in one run: the real job (`bench/flow_job.py`, documents discarded)
   on N combined records, and on the same N records as a predictions file plus a labels file
   (``CONFUSION_LABELS_INPUT``), labels in the records' order. Rates are records (predictions)
   over the in-process time; repeats are interleaved.
2. State: N prediction halves (3 models with score maps, as the sample stream) waiting in one
   `JoinStore`: bytes per waiting prediction in memory (tracemalloc: ids, dict, columns) and in
   the snapshot (pickled), and the time to take and pickle a snapshot.

    python bench/join.py [--quick] [--records N] [--waiting N] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.common import (
    PYTHON,
    ROOT,
    Report,
    Section,
    Target,
    bench_env,
    command_line,
    finish,
    num,
    parser,
    scaled_records,
    scaled_stream,
    table,
)

CACHE = ROOT / "bench" / "results" / "cache"


def split_files(n: int) -> tuple[Path, Path]:
    """The scaled stream of ``n`` records as a predictions file and a labels file (cached)."""
    preds, labels = CACHE / f"join-preds-{n}.jsonl", CACHE / f"join-labels-{n}.jsonl"
    if preds.exists() and labels.exists():
        return preds, labels
    CACHE.mkdir(parents=True, exist_ok=True)
    with preds.open("wb") as p, labels.open("wb") as lab:
        for line in scaled_records(n):
            record = orjson.loads(line)
            label = {"id": record["id"], "ts": record["ts"], "label": record.pop("label")}
            p.write(orjson.dumps(record) + b"\n")
            lab.write(orjson.dumps(label) + b"\n")
    return preds, labels


def run_job(input_path: Path, labels: Path | None, scratch: Path) -> dict[str, float]:
    result = scratch / "result.jsonl"
    result.unlink(missing_ok=True)
    settings: dict[str, Any] = {
        "source": "file",
        "input": input_path,
        "window_size": 1000,
        "emit_every": 100,
        "output": scratch / "documents.jsonl",
        "dead_letter_path": scratch / "dead.jsonl",
        "summary": "false",
    }
    if labels is not None:
        settings["labels_input"] = labels
    env = bench_env(**settings)
    env.update(BENCH_RESULT=str(result), BENCH_SINK="discard")
    cmd = [PYTHON, "-m", "bytewax.run", "bench.flow_job"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-3000:])
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    return {
        "seconds": max(r["ended"] for r in lines) - min(r["built"] for r in lines),
        "cpu": sum(r["cpu"] for r in lines),
        "documents": sum(r["documents"] for r in lines),
    }


def throughput(n: int, repeats: int, scratch: Path) -> dict[str, Any]:
    combined = scaled_stream(n)
    preds, labels = split_files(n)
    runs: dict[str, list[dict[str, float]]] = {"combined": [], "join": []}
    for _ in range(repeats):
        runs["combined"].append(run_job(combined, None, scratch))
        runs["join"].append(run_job(preds, labels, scratch))
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    cpu = {k: min(r["cpu"] for r in v) for k, v in runs.items()}
    docs = {k: v[0]["documents"] for k, v in runs.items()}
    assert docs["join"] == docs["combined"], f"not the same work: {docs}"
    return {
        "records": n,
        "runs": runs,
        "rate": {k: n / s for k, s in best.items()},
        "rate_per_cpu_s": {k: n / c for k, c in cpu.items()},
        "join_over_combined": best["combined"] / best["join"],
        "documents": docs,
    }


def state(n: int, scratch: Path) -> dict[str, Any]:
    """N prediction halves waiting in one store: memory, snapshot size and time, and what the
    next epoch writes (1,000 labels for predictions spread over all rows, 1,000 predictions)."""
    import random

    from flows.parsing.batches import RawBatch, parse_batch
    from flows.windows.join_log import DirSegments, SegmentLog
    from flows.windows.join_store import JoinStore

    directory = scratch / f"segments-{n}"
    store = JoinStore(7 * 86_400_000, SegmentLog(DirSegments(directory)))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    batch: list[bytes] = []
    epoch = min(1000, n // 2)  # changes in the next epoch (1,000 at the real sizes)
    for k, line in enumerate(scaled_records(n + epoch)):
        record = orjson.loads(line)
        del record["label"]
        if k >= n:
            batch.append(orjson.dumps(record))
            continue
        batch.append(orjson.dumps(record))
        if len(batch) == 10_000 or k == n - 1:
            parsed = parse_batch(
                RawBatch(batch, [0] * len(batch), "p", [0] * len(batch)), join=True
            )
            assert parsed.halves is not None
            store.step(parsed.halves)
            batch = []
            del parsed
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert store.waiting == n
    start = time.perf_counter()
    manifest = pickle.dumps(store.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)
    snap_s = time.perf_counter() - start
    first = store.log.written + len(manifest)
    # The next epoch: 1,000 labels for predictions anywhere in the rows, 1,000 new predictions.
    rng = random.Random(7)
    ids = [rid for rid in store.ids if rid is not None]
    labels = [orjson.dumps({"id": rid, "ts": 0, "label": "A"}) for rid in rng.sample(ids, epoch)]
    for lines, origin in ((labels, "l"), (batch, "p")):
        parsed = parse_batch(RawBatch(lines, [0] * epoch, origin, [0] * epoch), join=True)
        assert parsed.halves is not None
        store.step(parsed.halves)
    written = store.log.written
    start = time.perf_counter()
    manifest = pickle.dumps(store.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)
    next_s = time.perf_counter() - start
    shutil.rmtree(directory)
    return {
        "waiting": n,
        "epoch_changes": epoch,
        "memory_bytes": held,
        "memory_per_waiting": held / n,
        "snapshot_bytes": first,
        "snapshot_per_waiting": first / n,
        "snapshot_seconds": snap_s,
        "next_epoch_bytes": store.log.written - written + len(manifest),
        "next_epoch_seconds": next_s,
    }


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=None, help="records per run (default 1M)")
    p.add_argument("--waiting", type=int, default=None, help="waiting halves (default 1M)")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args(argv)
    records = args.records or (20_000 if args.quick else 1_000_000)
    waiting = args.waiting or (20_000 if args.quick else 1_000_000)
    repeats = args.repeats or (1 if args.quick else 2)
    report = Report(
        "join",
        "Delayed labels: the join path beside the combined path, and the join's state",
        command_line("join.py", argv),
    )
    scratch = CACHE / f"join-scratch-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    held = state(waiting, scratch)
    small = state(waiting // 10, scratch)
    report.data["state"] = held
    report.data["state_tenth"] = small
    if not args.skip_throughput:
        flow = throughput(records, repeats, scratch)
        report.data["throughput"] = flow
        share = flow["join_over_combined"]
        per_cpu = flow["rate_per_cpu_s"]["join"] / flow["rate_per_cpu_s"]["combined"]
        report.sections.append(
            Section(
                f"Whole job, file -> discard, {records:,} records x 3 models, window 1,000, "
                "emit 100",
                table(
                    ["input", "records/s (best)", "per CPU-s (best)", "documents"],
                    [
                        [
                            name,
                            num(flow["rate"][key]),
                            num(flow["rate_per_cpu_s"][key]),
                            f"{flow['documents'][key]:,}",
                        ]
                        for key, name in (
                            ("combined", "combined records"),
                            ("join", "predictions file + labels file (join on)"),
                        )
                    ],
                ),
                [
                    f"join / combined = {share:.2f} wall, {per_cpu:.2f} per CPU-s "
                    f"(best of {repeats} interleaved runs each; the same documents)"
                ],
            )
        )
        report.targets.append(
            Target("join path at least half the combined path", f"{share:.2f}", share >= 0.5)
        )
    report.sections.append(
        Section(
            "Predictions waiting (3 models, two with score maps) in one join store",
            table(
                [
                    "waiting",
                    "bytes each in memory",
                    "first snapshot: bytes each",
                    "first snapshot (s)",
                    "next epoch: bytes written",
                    "next epoch (s)",
                ],
                [
                    [
                        f"{row['waiting']:,}",
                        num(row["memory_per_waiting"], 1),
                        num(row["snapshot_per_waiting"], 1),
                        num(row["snapshot_seconds"], 3),
                        f"{row['next_epoch_bytes']:,}",
                        num(row["next_epoch_seconds"], 4),
                    ]
                    for row in (small, held)
                ],
            ),
            [
                "The next epoch: 1,000 labels for predictions drawn at random from all waiting "
                "rows, and 1,000 new predictions. Its snapshot writes one delta segment (the "
                "new rows whole, the state of the joined rows, the label changes) and the "
                "manifest Bytewax stores; the base written by the first snapshot is not "
                "written again until the deltas outgrow it (flows/windows/join_log.py)."
            ],
        )
    )
    ratio = held["next_epoch_bytes"] / small["next_epoch_bytes"]
    report.targets.append(
        Target(
            "a snapshot's cost follows what changed, not what waits (same epoch at 10x waiting)",
            f"{held['next_epoch_bytes']:,} B vs {small['next_epoch_bytes']:,} B ({ratio:.2f}x)",
            ratio < 1.5 if held["epoch_changes"] == small["epoch_changes"] else None,
        )
    )
    most = max(held["memory_per_waiting"], held["snapshot_per_waiting"])
    report.targets.append(
        Target(
            "under 300 bytes per waiting prediction, in memory and in the snapshot",
            f"{held['memory_per_waiting']:.0f} B / {held['snapshot_per_waiting']:.0f} B",
            most < 300 if waiting == 1_000_000 else None,
        )
    )
    shutil.rmtree(scratch, ignore_errors=True)  # the run's documents and segments
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
