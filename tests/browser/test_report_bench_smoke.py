"""``bench/report_page.py --quick`` runs end to end (tiny sizes, real Chromium) and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_report_page_benchmark_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "report_page.json"
    proc = subprocess.run(
        [sys.executable, "bench/report_page.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["title"] in proc.stdout
    headings = [s["heading"] for s in report["sections"]]
    assert headings[0].startswith("4 models x 50 documents")
    assert headings[1] == "Chart libraries, the same two charts"
    page = report["data"]["page"]
    assert page["failed"] == 0 and page["charts"] > 0
    assert page["load_s"] > 0 and page["overview_s"] > 0 and page["model_s"] > 0
    assert page["screens"] >= 1 and page["scroll_heap_mb"] > 0
    assert {t["met"] for t in report["targets"]} == {None}  # quick sizes judge nothing
