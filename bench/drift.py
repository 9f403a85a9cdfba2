"""Drift detection: how fast alerts come after an accuracy drop, how many come without one, and
what detectors and rules cost the whole job.

Quality runs the job's own per-model logic (`ModelWindowLogic`: window, documents, ADWIN
detectors, rules, alert state) on streams this benchmark generates: 3 classes, records right
with probability ``p``, which drops by 0.10 or 0.30 at a known record. Delay is the number of the
model's records from the change to the first ``fired`` alert. False alarms are ``fired`` alerts
on stationary streams, per 1,000,000 records. Cost runs the real job (file -> discard, 3 models,
window 1,000, emit 100) with detectors and rules on (the defaults) and off, interleaved.

    python bench/drift.py [--quick] [--cost-only] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    ratio,
    table,
)
from flows.demo import demo_lines
from flows.parsing.batches import ModelColumns
from flows.settings import load_settings
from flows.windows.count import CountPolicy
from flows.windows.model_state import Alert, Alerting, ModelWindowLogic

CLASSES = ["A", "B", "C"]
WINDOW = 1000
EMIT = 100
BATCH = 1000
BASE = 0.90
RULES = {
    "rule (default: accuracy drop>0.1)": "accuracy drop>0.1",
    "rule accuracy drop>0.05": "accuracy drop>0.05",
}


def batches(seed: int, levels: list[tuple[int, float]]) -> Iterator[ModelColumns]:
    """Batches of one model's records: ``levels`` = [(records, accuracy), ...] in order."""
    rng = np.random.default_rng(seed)
    acc = np.concatenate([np.full(n, p) for n, p in levels])
    total = len(acc)
    truth = rng.integers(0, len(CLASSES), total).astype(np.int32)
    wrong = (truth + rng.integers(1, len(CLASSES), total)) % len(CLASSES)
    pred = np.where(rng.random(total) < acc, truth, wrong).astype(np.int32)
    for lo in range(0, total, BATCH):
        hi = min(lo + BATCH, total)
        yield ModelColumns(
            "m",
            CLASSES,
            truth[lo:hi],
            pred[lo:hi],
            list(range(lo, hi)),
            np.arange(lo, hi, dtype=np.int64) * 50,
        )


def alerts_of(
    levels: list[tuple[int, float]], seed: int, rules: str, detector: str
) -> list[dict[str, Any]]:
    """The fired alerts the job's logic raises on one generated stream."""
    settings = load_settings({"CONFUSION_ALERT_RULES": rules, "CONFUSION_DRIFT_DETECTOR": detector})
    alerting = Alerting(settings.drift_config(), settings.alert_policy())
    logic = ModelWindowLogic(CountPolicy(WINDOW), EMIT, None, alerting=alerting)
    fired: list[dict[str, Any]] = []
    for batch in batches(seed, levels):
        out, _ = logic.on_batch([batch])
        fired += [a.doc for a in out if isinstance(a, Alert) and a.doc["status"] == "fired"]
    return fired


@dataclass(frozen=True, slots=True)
class Delay:
    medians: dict[str, float | None]
    missed: dict[str, int]
    runs: int


def delays(drop: float, runs: int, pre: int, post: int) -> Delay:
    by_source: dict[str, list[int]] = {}
    missed: dict[str, int] = {}
    contenders = {"ADWIN (detector)": ("none", "adwin")} | {
        name: (rule, "off") for name, rule in RULES.items()
    }
    for name, (rules, detector) in contenders.items():
        found: list[int] = []
        for seed in range(runs):
            fired = alerts_of([(pre, BASE), (post, BASE - drop)], seed, rules, detector)
            after = [a["fired_seq"] - pre for a in fired if a["fired_seq"] > pre]
            if after:
                found.append(min(after))
            else:
                missed[name] = missed.get(name, 0) + 1
        by_source[name] = found
    return Delay(
        {k: statistics.median(v) if v else None for k, v in by_source.items()}, missed, runs
    )


def false_alarms(records: int, accuracy: float, seed: int) -> dict[str, int]:
    out = {"ADWIN (detector)": len(alerts_of([(records, accuracy)], seed, "none", "adwin"))}
    for name, rule in RULES.items():
        out[name] = len(alerts_of([(records, accuracy)], seed, rule, "off"))
    return out


OFF = {"drift_detector": "off", "alert_rules": "none"}


def demo_file(records: int) -> Path:
    """The embedded demo stream as a JSON-lines file (3 models, model2 drifting half way)."""
    path = CACHE / f"demo-2026-{records}.jsonl"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for lo in range(0, records, 100_000):
                f.write(
                    b"".join(line + b"\n" for line in demo_lines(2026, records, lo, lo + 100_000))
                )
        tmp.replace(path)
    return path


def job_seconds(path: Path, scratch: Path, alerting: bool) -> tuple[float, float]:
    """In-process wall and CPU seconds of the real job, file -> discard (bench/flow_job)."""
    result = scratch / "result.jsonl"
    result.unlink(missing_ok=True)
    env = bench_env(
        source="file",
        input=path,
        window_size=WINDOW,
        emit_every=EMIT,
        alerts_output=scratch / "alerts.jsonl",
        output=scratch / "docs.jsonl",
        dead_letter_path=scratch / "dead.jsonl",
        summary="false",
        **({} if alerting else OFF),
    )
    env.update(BENCH_RESULT=str(result), BENCH_SINK="discard")
    done = subprocess.run(
        [PYTHON, "-m", "bytewax.run", "bench.flow_job"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-3000:])
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    wall = float(max(r["ended"] for r in lines) - min(r["built"] for r in lines))
    return wall, float(sum(r["cpu"] for r in lines))


def cost(records: int, repeats: int) -> dict[str, Stat]:
    """Records/s of the job with alerting on and off, over wall time and over CPU time."""
    path = demo_file(records)
    path.read_bytes()  # warm the page cache
    runs: dict[str, list[float]] = {"on": [], "off": [], "on cpu": [], "off cpu": []}
    with tempfile.TemporaryDirectory(prefix="confusion-drift-") as tmp:
        for r in range(repeats):
            for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
                wall, cpu = job_seconds(path, Path(tmp), name == "on")
                runs[name].append(wall)
                runs[f"{name} cpu"].append(cpu)
                print(
                    f"  job, alerting {name}: {wall:.2f} s, CPU {cpu:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return {name: Stat.of(values).rate(records) for name, values in runs.items()}


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cost-only", action="store_true", help="only the throughput on/off")
    args = p.parse_args(argv)
    runs = 3 if args.quick else 25
    stationary = 50_000 if args.quick else 1_000_000
    report = Report(
        "drift", "Drift detection: delay, false alarms, cost", command_line("drift.py", argv)
    )
    results: dict[float, Delay] = {}
    pooled: dict[str, float] = {}
    if not args.cost_only:
        rows = []
        for drop in (0.10, 0.30):
            result = delays(drop, runs, pre=20_000, post=20_000)
            results[drop] = result
            for name, median in result.medians.items():
                rows.append(
                    (f"{drop:.2f}", name, num(median), f"{result.missed.get(name, 0)}/{runs}")
                )
        report.sections.append(
            Section(
                f"Delay from an accuracy drop (0.90 -> 0.90 - drop) to the first alert, median of "
                f"{runs} streams (records of the model)",
                table(
                    ("drop", "alert", "median delay", "missed (no alert in 20,000 records)"), rows
                ),
                [
                    "Window 1,000 records, documents every 100: rules are judged every 100 "
                    "records, so their delay includes the window filling with new records and "
                    "the emission step.",
                    "ADWIN: delta 0.002, clock 32 (the defaults).",
                ],
            )
        )
        fa_rows = []
        fired: dict[str, int] = {}
        accuracies = (0.5, 0.9, 0.97)
        for k, accuracy in enumerate(accuracies):
            counts = false_alarms(stationary, accuracy, seed=1000 + k)
            for name, n in counts.items():
                fired[name] = fired.get(name, 0) + n
                fa_rows.append((f"{accuracy:.2f}", name, n, num(n * 1_000_000 / stationary, 1)))
        pooled = {name: n * 1_000_000 / (stationary * len(accuracies)) for name, n in fired.items()}
        fa_rows += [("all", name, fired[name], num(rate, 2)) for name, rate in pooled.items()]
        report.sections.append(
            Section(
                f"False alarms on stationary streams of {stationary:,} records each",
                table(("accuracy", "alert", "fired", "per 1,000,000 records"), fa_rows),
                ["'all' pools the three streams. Any fired alert counts: nothing changed."],
            )
        )
        if not args.quick:
            default = next(name for name in RULES if "default" in name)
            report.targets.append(
                Target(
                    "false alarms: 0 for rules (the default rule), under 1 per 1,000,000 "
                    "records for detectors",
                    ", ".join(
                        f"{k}: {fired[k]} in {stationary * len(accuracies):,} records"
                        for k in fired
                    ),
                    fired[default] == 0 and pooled["ADWIN (detector)"] < 1,
                )
            )
    records = 20_000 if args.quick else 1_000_000
    repeats = args.repeats or (1 if args.quick else 5)
    rates = cost(records, repeats)
    share = rates["on"].median / rates["off"].median
    share_cpu = rates["on cpu"].median / rates["off cpu"].median

    def row(label: str, key: str) -> tuple[str, str, str, str, str]:
        wall, cpu = rates[key], rates[f"{key} cpu"]
        return (
            label,
            num(wall.median),
            f"{num(wall.low)}–{num(wall.high)}",
            num(cpu.median),
            ratio(cpu.median, rates["off cpu"].median),
        )

    report.sections.append(
        Section(
            f"Cost: the whole job, file -> discard, {records:,} demo records (3 models with score "
            f"maps and bare labels, model2 drifting), window {WINDOW:,}, emit {EMIT}; median of "
            f"{repeats}, interleaved",
            table(
                ("job", "records/s", "min–max", "records per CPU-s", "vs off (CPU)"),
                [
                    row("detectors + rules on (defaults: ADWIN, accuracy drop>0.1)", "on"),
                    row("off (CONFUSION_DRIFT_DETECTOR=off, CONFUSION_ALERT_RULES=none)", "off"),
                ],
            ),
            [
                "records/s: over the in-process wall time (flow built -> run ended); records per "
                "CPU-s: over its CPU time, which a busy shared machine disturbs less. Wall-time "
                f"ratio on/off: {share:.1%}."
            ],
        )
    )
    if not args.quick:
        report.targets.append(
            Target(
                "the job with detectors on runs at >= 85% of its throughput with them off "
                "(judged on CPU time: the machine is shared)",
                f"{share_cpu:.1%} per CPU-s, {share:.1%} wall",
                share_cpu >= 0.85,
            )
        )
    report.data = {
        "throughput": {k: v.median for k, v in rates.items()},
        "share": share,
        "share_cpu": share_cpu,
        "delays": {str(d): r.medians for d, r in results.items()},
        "false_alarms_per_million": pooled,
    }
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
