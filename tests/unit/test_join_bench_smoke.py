"""bench/join.py runs at tiny sizes and reports what BENCHMARKS.md quotes; nothing is measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_join_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "join.json"
    args = ["--records", "3000", "--waiting", "3000", "--repeats", "1", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "bench/join.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["name"] == "join" and len(report["sections"]) == 2
    state = report["data"]["state"]
    assert state["waiting"] == 3000 and state["memory_per_waiting"] > 0
    assert state["snapshot_per_waiting"] > 0
    tenth = report["data"]["state_tenth"]
    assert tenth["waiting"] == 300 and state["next_epoch_bytes"] > 0 < tenth["next_epoch_bytes"]
    (follows,) = (t for t in report["targets"] if t["goal"].startswith("a snapshot's cost"))
    assert follows["met"] is None  # 3,000 and 300 waiting see epochs of different sizes
    flow = report["data"]["throughput"]
    assert flow["documents"]["join"] == flow["documents"]["combined"] > 0
    assert flow["join_over_combined"] > 0
    (throughput,) = (t for t in report["targets"] if t["goal"].startswith("join path"))
    assert throughput["met"] == (flow["join_over_combined"] >= 0.5)
