"""Run every benchmark, each in its own process, and write BENCHMARKS.md from their reports.

Called by ``bench/run``; ``--quick`` checks that everything runs (tiny sizes) and writes
bench/results/BENCHMARKS-quick.md instead of BENCHMARKS.md. ``--only NAME`` (repeatable) runs a
subset and keeps the other sections from their last saved report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PYTHON, RESULTS, ROOT, machine, mark, table

BENCHMARKS = (
    "core_update",
    "flow",
    "parse_speed",
    "state",
    "scores",
    "join",
    "profile_flow",
    "end_to_end",
    "drift",
    "es_source",
    "report_page",
)


def run_one(name: str, quick: bool, out: Path) -> dict[str, Any]:
    cmd = [PYTHON, f"bench/{name}.py", "--json", str(out)] + (["--quick"] if quick else [])
    load = os.getloadavg()[0]
    print(f"== {' '.join(cmd[1:])} (load {load:.2f})", file=sys.stderr, flush=True)
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    print(proc.stdout, flush=True)
    if proc.returncode != 0 or not out.exists():
        return {
            "name": name,
            "title": name,
            "command": f"python bench/{name}.py",
            "failed": f"exit status {proc.returncode}",
            "seconds": seconds,
            "load": load,
            "sections": [],
            "targets": [],
            "notes": [],
        }
    report: dict[str, Any] = json.loads(out.read_text())
    report["load"] = load
    report["wall"] = seconds
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def target_notes(reports: list[dict[str, Any]]) -> list[str]:
    """What the measurements say about the throughput targets, in numbers."""
    notes = [
        "Targets are judged on the medians in the sections below; the machine is shared, "
        "so a rerun on a quiet machine can move them by tens of percent."
    ]
    core = next((r for r in reports if r["name"] == "core_update" and r.get("data")), None)
    parse_us = (core or {}).get("data", {}).get("parse_us", {})
    ours = next((v for k, v in parse_us.items() if k.startswith("ours")), None)
    floor = min((v for k, v in parse_us.items() if not k.startswith("ours")), default=None)
    if ours and floor:
        notes.append(
            f"Parsing alone costs {ours:.2f} µs per record ({1e6 / ours:,.0f} "
            f"records/s), and the fastest bare JSON decode {floor:.2f} µs "
            f"({1e6 / floor:,.0f} records/s): one process meets 300,000 records/s "
            "(3.3 µs per record for "
            "everything) only if parsing, windows, documents and Bytewax together cost "
            "little more than the decode. More cores help only with more input "
            "partitions: the file source has one, so `-w 2`/`-p 2` parse on one "
            "worker."
        )
    return notes


def profile_summary(data: dict[str, Any]) -> str:
    """Two sentences on where the job's time goes, from the profile's numbers."""
    total = data["total"] or 1
    areas = sorted(data["areas"].items(), key=lambda kv: -kv[1])
    shares = ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in areas[:5])
    top = sorted(data["self"].items(), key=lambda kv: -kv[1])[:3]
    hot = ", ".join(f"`{name}` {100 * n / total:.0f}%" for name, n in top)
    return (
        f"**Summary.** Of the job's Python time: {shares}. The hottest functions (self "
        f"time) are {hot}; the tables below give lines and inclusive times."
    )


def render(reports: list[dict[str, Any]], quick: bool, total: float) -> str:
    facts = machine()
    code: dict[str, str] = next((r["code"] for r in reversed(reports) if r.get("code")), {})
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run`"
        + (" --quick (tiny sizes: checks, not measurements)" if quick else "")
        + f" on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"in {total / 60:.1f} min (all benchmarks added up). Re-run with `bench/run`; each "
        "benchmark also runs alone (`.venv/bin/python bench/<name>.py [--quick]`), printing "
        "the same tables.",
        "",
        "## Machine and versions",
        "",
        table(
            ("", ""),
            [
                ("cores", facts["cores"]),
                ("CPU", facts["cpu"]),
                ("RAM", facts["ram"]),
                ("OS", facts["os"]),
                ("Python", facts["python"]),
                *(
                    (k, facts[k])
                    for k in (
                        "bytewax",
                        "numpy",
                        "river",
                        "scikit-learn",
                        "orjson",
                        "confluent-kafka",
                        "elasticsearch",
                    )
                ),
                (
                    "code (last run)",
                    f"commit {code.get('commit', '?')}, flows/ digest "
                    f"{code.get('flows_sha256', '?')}, flows/ modified vs commit: "
                    f"{code.get('flows_modified', '?')}",
                ),
            ],
        ),
        "",
        "The machine is shared (other jobs may run during a benchmark): the 1-minute load average "
        "at the start of each benchmark is given with it, and the flow table also reports "
        "records per CPU-second, which a busy machine disturbs less than wall time.",
        "",
        "## Targets",
        "",
    ]
    rows = [(t["goal"], t["measured"], mark(t["met"])) for r in reports for t in r["targets"]]
    rows += [
        (r["title"], r.get("failed") or f"skipped: {r['skipped']}", "NOT MEASURED")
        for r in reports
        if r.get("failed") or r.get("skipped")
    ]
    lines += [table(("target", "measured", "status"), rows), ""]
    lines += [f"- {note}" for note in target_notes(reports)]
    lines.append("")
    for r in reports:
        code = r.get("code") or {}
        lines += [
            f"## {r['title']}",
            "",
            f"Command: `{r['command']}` — {r.get('wall', r['seconds']):.0f} s, load "
            f"{r.get('load', 0):.2f} at start; code {code.get('commit', '?')} + flows/ "
            f"digest {code.get('flows_sha256', '?')}.",
            "",
        ]
        if r.get("failed"):
            lines += [f"FAILED: {r['failed']} (see the run's output).", ""]
            continue
        if r.get("skipped"):
            lines += [f"Skipped: {r['skipped']}", ""]
        if r["name"] == "profile" and r.get("data", {}).get("areas"):
            lines += [profile_summary(r["data"]), ""]
        for section in r["sections"]:
            lines += [f"### {section['heading']}", "", section["table"], ""]
            lines += [f"- {note}" for note in section["notes"]]
            if section["notes"]:
                lines.append("")
        lines += [f"- {note}" for note in r["notes"]]
        if r["notes"]:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", choices=BENCHMARKS, default=None)
    p.add_argument(
        "--render",
        action="store_true",
        help="run nothing: rewrite the Markdown from the last saved reports",
    )
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    reports = []
    for name in BENCHMARKS:
        out = RESULTS / f"{name}{suffix}.json"
        if args.render or (args.only and name not in args.only):
            if out.exists():
                reports.append(json.loads(out.read_text()))
            continue
        reports.append(run_one(name, args.quick, out))
    target = RESULTS / "BENCHMARKS-quick.md" if args.quick else ROOT / "BENCHMARKS.md"
    total = sum(r.get("wall", r.get("seconds", 0.0)) for r in reports)
    text = render(reports, args.quick, total)
    # Results of scripts/drills (a soak takes 30 minutes: not part of bench/run), kept by hand.
    drills = ROOT / "bench" / "drills-results.md"
    if drills.exists() and not args.quick:
        text = text.rstrip("\n") + "\n\n" + drills.read_text()
    target.write_text(text)
    print(f"wrote {target.relative_to(ROOT)}", file=sys.stderr)
    if any(r.get("failed") for r in reports):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
