"""Every benchmark runs at tiny sizes (``--quick``) and writes a report; nothing is measured.

The five scripts run side by side (each in its own process) to keep this under ~20 s on two
cores. End to end is pointed at no server (``BENCH_NO_SERVICES``), so it must skip cleanly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = (
    "core_update",
    "flow",
    "parse_speed",
    "state",
    "scores",
    "profile_flow",
    "end_to_end",
    "drift",
    "es_source",
)
HEADINGS = {
    "core_update": "Core update",
    "flow": "Flow:",
    "parse_speed": "Parse speed:",
    "state": "State:",
    "scores": "Scores:",
    "profile_flow": "Profile",
    "end_to_end": "End to end",
    "drift": "Drift detection",
    "es_source": "Elasticsearch -> job",
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CONFUSION_KAFKA_BOOTSTRAP", "CONFUSION_ES_URL")
    }
    env["BENCH_NO_SERVICES"] = "1"
    procs = {
        name: subprocess.Popen(
            [sys.executable, f"bench/{name}.py", "--quick", "--json", str(tmp / f"{name}.json")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
    }
    out: dict[str, dict[str, Any]] = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"bench/{name}.py --quick failed:\n{stderr[-3000:]}"
        report = json.loads((tmp / f"{name}.json").read_text())
        report["stdout"] = stdout
        out[name] = report
    return out


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_and_reports(reports: dict[str, dict[str, Any]], name: str) -> None:
    report = reports[name]
    assert HEADINGS[name] in report["title"]
    assert report["command"].startswith(f"python bench/{name}.py --quick")
    assert report["title"] in report["stdout"]
    if name in ("end_to_end", "es_source"):
        assert report["skipped"], "with no server, end to end must say why it skipped"
        return
    assert report["sections"], f"{name} reported no table"
    for section in report["sections"]:
        assert section["table"].startswith("| ")


def test_core_and_flow_targets_follow_from_their_measurements(
    reports: dict[str, dict[str, Any]],
) -> None:
    core, flow = reports["core_update"]["data"], reports["flow"]["data"]
    job, river = core["ours_job_path_3x2"], core["river_3x2"]
    ours, naive = flow["ours_w1_emit100"], flow["naive_emit100"]
    assert min(job, river, ours, naive) > 0
    assert [t["met"] for t in reports["core_update"]["targets"]] == [job >= 10 * river]
    assert [t["met"] for t in reports["flow"]["targets"]] == [ours >= 3 * naive, ours >= 300_000]


def test_scores_targets_follow_from_their_measurements(
    reports: dict[str, dict[str, Any]],
) -> None:
    data = reports["scores"]["data"]
    on, off = data["rates"]["100"], data["rates"]["0"]
    assert min(on, off) > 0
    assert reports["scores"]["targets"][0]["met"] == (on / off >= 0.75)
    with_scores, labels_only = data["states"]
    assert with_scores["scores_nbytes"] > 0 and labels_only["scores_nbytes"] == 0


def test_render_writes_targets_and_sections(reports: dict[str, dict[str, Any]]) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.run_all import render

    text = render(list(reports.values()), quick=True, total=1.0)
    assert text.startswith("# Benchmarks")
    assert "## Targets" in text and "## Machine and versions" in text
    for report in reports.values():
        assert f"## {report['title']}" in text
