"""The report at scale: 100 models x 1,000 documents (100,000), page size and load time in Chromium.

Documents are synthetic but shaped exactly like the job's (metrics by `flows.metrics`), a mix of
3, 5, 10 and 20 classes, half the models with a ``scores`` object, a few alerts. What is timed is
what a user runs: ``confusion-report`` (a subprocess, its peak memory too), then the page in
headless Chromium over the DevTools protocol: the load event, the drawing of the overview's
charts, one model's charts after jumping to it, a scroll through the whole page (with the JS
heap after it), and every chart drawn and kept (``renderAll``).

Side by side: the same page without downsampling (every document a point), i.e. what the page
would cost without the min/max reduction, and the chart libraries considered (vl-convert's Vega
against matplotlib, one 20-class heatmap and one 4 x 1,000-point line chart).
"""

from __future__ import annotations

import gzip
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PYTHON, ROOT, Report, Section, Target, finish, parser, table
from tests.chromium import Page, chromium
from tests.report_docs import alert_doc, window_docs

CLASSES = (3, 5, 10, 20)


def write_documents(path: Path, models: int, docs_per_model: int) -> int:
    written = 0
    with path.open("wb") as out:
        for m in range(models):
            name = f"model-{m:03d}"
            for doc in window_docs(
                name,
                docs_per_model,
                classes=CLASSES[m % len(CLASSES)],
                seed=m,
                drift_at=0.7 if m % 7 == 0 else None,
                scores=m % 2 == 0,
            ):
                out.write(orjson.dumps(doc) + b"\n")
                written += 1
            if m % 7 == 0:
                out.write(orjson.dumps(alert_doc(name, int(docs_per_model * 0.75) * 100)) + b"\n")
    return written


def run_report(source: Path, html: Path, *extra: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``confusion-report`` on ``source``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "flows.tools.report", str(source), "-o", str(html), "--png", "none", *extra],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


SCROLL_JS = """(async function(){
  const t0 = performance.now(); let y = 0, steps = 0;
  while (y < document.documentElement.scrollHeight) {
    window.scrollTo(0, y); await new Promise(function(r){ setTimeout(r, 30); });
    await window.confusionReport.idle(); y += window.innerHeight; steps++;
  }
  const s = window.confusionReport.state;
  return {seconds: (performance.now() - t0) / 1000, steps: steps, released: s.released};
})()"""


def _timed_eval(page: Page, expression: str, timeout_s: float = 600) -> tuple[float, Any]:
    start = time.perf_counter()
    value = page.evaluate(expression, timeout_s=timeout_s)
    return time.perf_counter() - start, value


def _heap_mb(page: Page) -> float:
    page.call("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in page.call("Performance.getMetrics")["metrics"]}
    return float(metrics.get("JSHeapUsedSize", 0)) / 1e6


def open_page(page: Page, html: Path, model: str) -> dict[str, float]:
    """Load, draw the overview's charts, then jump to one model and draw its charts."""
    start = time.perf_counter()
    page.navigate(html.resolve().as_uri())
    loaded = time.perf_counter() - start
    overview, _ = _timed_eval(page, "window.confusionReport.render('overview--')")
    one, _ = _timed_eval(
        page,
        f"document.getElementById('m-{model}').scrollIntoView(); "
        f"window.confusionReport.render('{model}--')",
    )
    return {"load_s": loaded, "overview_s": overview, "model_s": one}


def measure_page(html: Path, repeats: int, model: str, *, scroll: bool) -> dict[str, float]:
    """Medians of ``repeats`` fresh browsers; then, once, a scroll through the whole page
    (charts drawn as they come into view, far ones released) and every chart drawn and kept."""
    runs = []
    for _ in range(repeats):
        with chromium(timeout_s=120) as page:
            runs.append(open_page(page, html, model))
            if page.errors:
                raise RuntimeError(f"the page reported errors: {page.errors[:3]}")
    result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    if scroll:
        with chromium(timeout_s=120) as page:
            page.call("Performance.enable")
            page.navigate(html.resolve().as_uri())
            _, walk = _timed_eval(page, SCROLL_JS, 3600)
            result |= {
                "scroll_s": walk["seconds"],
                "screens": walk["steps"],
                "scroll_heap_mb": _heap_mb(page),
            }
            seconds, state = _timed_eval(page, "window.confusionReport.renderAll()", 3600)
            result |= {
                "all_s": seconds,
                "all_heap_mb": _heap_mb(page),
                "charts": state["total"],
                "failed": state["failed"],
            }
            if page.errors:
                raise RuntimeError(f"the page reported errors: {page.errors[:3]}")
    return result


def build_without_downsampling(source: Path, html: Path) -> None:
    """The same report with every document a point (the reduction switched off)."""
    from flows.tools.report import charts
    from flows.tools.report.cli import run

    charts.HEADLINE_BUCKETS = charts.CLASS_BUCKETS = charts.OVERVIEW_BUCKETS = 10**9
    run([str(source), "-o", str(html), "--png", "none"])


def libraries(repeats: int) -> list[list[str]]:
    """PNG time and SVG size of two charts in Vega (vl-convert) and in matplotlib."""
    import numpy as np
    import vl_convert

    from flows.tools.report.charts import heatmap_chart

    doc = next(window_docs("m", 10, classes=20, seed=1))
    heat = heatmap_chart(doc, normalized=False).full_spec()
    rng = np.random.default_rng(1)
    points = [
        {"x": i * 100, "series": s, "y": float(rng.random())}
        for i in range(1000)
        for s in ("a", "b", "c", "d")
    ]
    line = {
        "width": 560,
        "height": 220,
        "data": {"values": points},
        "mark": "line",
        "encoding": {
            "x": {"field": "x", "type": "quantitative"},
            "y": {"field": "y", "type": "quantitative"},
            "color": {"field": "series"},
        },
    }
    rows = []

    def best(fn: Any) -> float:
        fn()
        return min(_timed(fn) for _ in range(repeats))

    for name, spec in (("20-class heatmap", heat), ("4 lines x 1,000 points", line)):
        png = best(lambda spec=spec: vl_convert.vegalite_to_png(spec, scale=2))
        svg = len(vl_convert.vegalite_to_svg(spec))
        rows.append(
            [
                f"Vega via vl-convert: {name}",
                f"{png * 1000:.0f}",
                f"{svg / 1000:.0f}",
                f"{len(orjson.dumps(spec)) / 1000:.0f}",
            ]
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return rows
    matrix = np.array(doc["matrix"])

    def mpl_heat(fmt: str) -> bytes:
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(20), doc["labels"], rotation=90)
        ax.set_yticks(range(20), doc["labels"])
        for i in range(20):
            for j in range(20):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6)
        return _save(fig, fmt, plt)

    def mpl_line(fmt: str) -> bytes:
        fig, ax = plt.subplots(figsize=(8, 3))
        ys = rng.random((4, 1000))
        for y in ys:
            ax.plot(np.arange(1000) * 100, y)
        return _save(fig, fmt, plt)

    plt.rcParams["svg.fonttype"] = "none"
    for name, fn in (("20-class heatmap", mpl_heat), ("4 lines x 1,000 points", mpl_line)):
        png = best(lambda fn=fn: fn("png"))
        rows.append(
            [
                f"matplotlib (static SVG): {name}",
                f"{png * 1000:.0f}",
                f"{len(fn('svg')) / 1000:.0f}",
                "—",
            ]
        )
    return rows


def _save(fig: Any, fmt: str, plt: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=150)
    plt.close(fig)
    return buffer.getvalue()


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    started = time.perf_counter()
    load = os.getloadavg()[0]
    models, per_model = (4, 50) if args.quick else (100, 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    report = Report(
        "report_page",
        "Report page: size and load time in Chromium",
        "python bench/report_page.py" + (" --quick" if args.quick else ""),
    )
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "docs.jsonl"
        docs = write_documents(source, models, per_model)
        html, raw = tmp / "report.html", tmp / "raw.html"
        build_s, rss_mb = run_report(source, html)
        model = f"model-{models // 2:03d}"
        page = measure_page(html, repeats, model, scroll=True)
        subprocess.run(
            [
                PYTHON,
                "-c",
                "import sys; sys.path.insert(0, '.'); "
                "from bench.report_page import build_without_downsampling as b; "
                f"from pathlib import Path; b(Path({str(source)!r}), "
                f"Path({str(raw)!r}))",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        raw_page = measure_page(raw, repeats, model, scroll=False)
        size, raw_size = html.stat().st_size, raw.stat().st_size
        gz = len(gzip.compress(html.read_bytes()))
        rows = [
            [
                "downsampled (what confusion-report writes)",
                f"{size / 1e6:.1f}",
                f"{gz / 1e6:.1f}",
                f"{page['load_s']:.2f}",
                f"{page['overview_s']:.2f}",
                f"{page['model_s']:.2f}",
            ],
            [
                "every document a point",
                f"{raw_size / 1e6:.1f}",
                "—",
                f"{raw_page['load_s']:.2f}",
                f"{raw_page['overview_s']:.2f}",
                f"{raw_page['model_s']:.2f}",
            ],
        ]
        per_screen = page["scroll_s"] / max(page["screens"], 1)
        report.sections.append(
            Section(
                f"{models} models x {per_model:,} documents ({docs:,} lines), Chromium headless",
                table(
                    [
                        "page",
                        "size MB",
                        "gzip MB",
                        "load event s",
                        "overview charts drawn s",
                        "jump to a model, its charts drawn s",
                    ],
                    rows,
                ),
                [
                    f"`confusion-report` read the file and wrote the page in {build_s:.1f} s "
                    f"(peak RSS {rss_mb:.0f} MB), PNGs off; the page has {page['charts']:.0f} charts.",
                    "Load event: the HTML (with the 0.9 MB Vega bundle and the data) parsed and its "
                    "script run; charts draw when they come into view, one at a time. Medians of "
                    f"{repeats} fresh browsers; 1-minute load average at the start {load:.1f} on "
                    f"{os.cpu_count()} cores (the machine is shared).",
                    f"Scrolling through the whole page ({page['screens']:.0f} screens, each drawn "
                    f"before the next): {page['scroll_s']:.0f} s ({per_screen:.2f} s per screen); JS "
                    f"heap after it {page['scroll_heap_mb']:.0f} MB, as charts far out of view give "
                    "their Vega views back.",
                    f"Every chart drawn and kept (`renderAll()`, what the browser tests do): "
                    f"{page['all_s']:.0f} s, JS heap {page['all_heap_mb']:.0f} MB.",
                ],
            )
        )
        report.data = {
            "size": size,
            "gzip": gz,
            "build_s": build_s,
            "rss_mb": rss_mb,
            "page": page,
            "raw_size": raw_size,
            "raw_page": raw_page,
        }
        report.targets += [
            Target(
                "at 100 models x 100k documents, the page loads and draws its overview within 3 s",
                f"{page['load_s'] + page['overview_s']:.2f} s",
                page["load_s"] + page["overview_s"] <= 3.0 if not args.quick else None,
            ),
            Target(
                "memory stays bounded while scrolling the whole page (JS heap under 300 MB)",
                f"{page['scroll_heap_mb']:.0f} MB",
                page["scroll_heap_mb"] <= 300 if not args.quick else None,
            ),
            Target(
                "page under 30 MB at 100 models x 100k documents",
                f"{size / 1e6:.1f} MB",
                size <= 30e6 if not args.quick else None,
            ),
        ]
    report.sections.append(
        Section(
            "Chart libraries, the same two charts",
            table(
                ["renderer and chart", "PNG ms (best)", "SVG kB", "spec+data JSON kB"],
                libraries(1 if args.quick else 3),
            ),
            [
                "Vega draws in the browser from the spec and its data, so the page carries data "
                "(kilobytes), not drawn elements; a static SVG per chart carries every drawn element "
                "and grows with the number of charts and points."
            ],
        )
    )
    finish(report, args, started)


if __name__ == "__main__":
    main()
