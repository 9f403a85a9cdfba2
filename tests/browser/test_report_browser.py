"""The report page in a real headless Chromium (Debian's package), over the DevTools protocol.

Every page must load with no console error and no uncaught exception, draw every chart (Vega
finished and the chart's SVG holds visible data marks), and ask for nothing but its own file.
Screenshots are kept in ``out/test-artifacts/`` (ignored by git; ``CONFUSION_TEST_ARTIFACTS``
moves them) for a person to look at. A missing Chromium is a failure, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import CHART_CHECK_JS, Page, chromium
from tests.report_docs import page_charts, rich_documents, run_report, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CONFUSION_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))


@pytest.fixture(scope="module")
def browser() -> Any:
    with chromium() as page:
        yield page


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real job on its demo stream (20,000 records, drift included), then the report."""
    tmp = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "CONFUSION_DEMO_RECORDS": "20000",
        "CONFUSION_OUTPUT": str(tmp / "confusion.jsonl"),
        "CONFUSION_DEAD_LETTER_PATH": str(tmp / "dead.jsonl"),
        "CONFUSION_PROGRESS": "off",
        "CONFUSION_SUMMARY": "false",
    }
    subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.confusion"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    result = run_report(tmp / "confusion.jsonl", "-o", tmp / "report.html", "--png", "none")
    assert result.returncode == 0, result.stderr
    return tmp / "report.html"


@pytest.fixture(scope="module")
def rich_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rich")
    source = write_jsonl(tmp / "out.jsonl", rich_documents())
    result = run_report(source, "-o", tmp / "report.html", "--png", "none")
    assert result.returncode == 0, result.stderr
    return tmp / "report.html"


def load_and_check(page: Page, html: Path, shot: str) -> dict[str, dict[str, Any]]:
    """Open ``html``, draw every chart, assert no error and no blank chart; keep a screenshot."""
    page.requests.clear()
    page.errors.clear()
    page.navigate(html.resolve().as_uri())
    charts = page.evaluate(CHART_CHECK_JS, timeout_s=300)
    page.screenshot(ARTIFACTS / shot)
    assert page.errors == []
    expected = set(page_charts(html))
    by_id = {c["id"]: c for c in charts}
    assert set(by_id) == expected
    for chart in charts:
        assert chart["state"] == "done", chart
        assert chart["drawn"] > 0, f"{chart['id']} drew nothing: {chart}"
        assert chart["width"] > 200 and chart["height"] > 100, chart
    foreign = [u for u in page.requests if not u.startswith(("file:", "data:", "about:"))]
    assert foreign == []  # self-contained: nothing fetched from anywhere
    return by_id


def test_demo_report_renders_every_chart(browser: Page, demo_report: Path) -> None:
    charts = load_and_check(browser, demo_report, "report-demo.png")
    assert {cid.split("--")[0] for cid in charts} == {"overview", "model1", "model2", "model3"}
    # The 3x3 heatmaps draw 9 cells and 9 numbers; a metrics chart 4 lines + the fill area.
    assert charts["model2--matrix"]["drawn"] == 18
    assert charts["model2--metrics"]["drawn"] >= 5


def test_rich_report_draws_scores_labels_and_alerts(browser: Page, rich_report: Path) -> None:
    charts = load_and_check(browser, rich_report, "report-rich.png")
    for cid in (
        "binary--roc",
        "binary--pr",
        "binary--reliability",
        "binary--scores",
        "wide--class-auc",
        "wide--coverage",
        "wide--latency",
    ):
        assert cid in charts
    assert charts["wide--matrix"]["drawn"] == 800  # 20 x 20 cells, each with its count
    rules = browser.evaluate(
        'document.querySelectorAll(\'[data-chart="binary--metrics"] g.mark-rule.role-mark'
        " > line').length"
    )
    assert rules == 3  # binary's three alert documents, marked on its metrics


def test_filter_hides_other_models(browser: Page, rich_report: Path) -> None:
    browser.navigate(rich_report.resolve().as_uri())
    shown = browser.evaluate("""(function(){
      const f = document.getElementById('filter'); f.value = 'wid';
      f.dispatchEvent(new Event('input'));
      return Array.from(document.querySelectorAll('section.model'))
        .filter(s => !s.classList.contains('hidden')).map(s => s.dataset.model); })()""")
    assert shown == ["wide"]
    assert browser.errors == []
