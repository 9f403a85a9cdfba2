"""The HTML page and the PNG files: tables in HTML, charts as Vega-Lite specs rendered by Vega.

The page is one file with everything inlined: the Vega/Vega-Lite/vega-embed bundle that ships
inside the ``vl-convert-python`` wheel (no network at build or view time), the CSS, the chart
data as compact columns, and a small script that renders a chart when it scrolls into view, so
a 100-model page opens as fast as a 3-model one. PNGs are rendered by vl-convert from the very
same specs with the same Vega version.
"""

from __future__ import annotations

import html
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flows.tools.report import charts as charts_mod
from flows.tools.report.charts import (
    Chart,
    Rows,
    cell,
    model_charts,
    overview_charts,
)
from flows.tools.report.series import Alert, Collection, SeriesFrame

PNG_SCALE = 2.0


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script, from the vl-convert wheel (offline)."""
    import vl_convert

    return str(vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;"))


def encode_rows(rows: Rows) -> dict[str, Any]:
    """Rows as columns: strings dictionary-coded, large integers (times) as base + delta."""
    keys: list[str] = []
    for row in rows:
        for key in row:
            if key not in keys:
                keys.append(key)
    cols: dict[str, Any] = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, str) for v in present):
            uniq = list(dict.fromkeys(present))
            index = {v: i for i, v in enumerate(uniq)}
            cols[key] = {"dict": uniq, "codes": [-1 if v is None else index[v] for v in values]}
        elif (
            present
            and all(isinstance(v, int) and not isinstance(v, bool) for v in present)
            and min(present) > 1_000_000_000
        ):
            base = min(present)
            cols[key] = {"base": base, "delta": [None if v is None else v - base for v in values]}
        else:
            cols[key] = values
    return {"n": len(rows), "cols": cols}


def decode_columns(table: dict[str, Any]) -> Rows:
    """The inverse of `encode_rows` (the page's script does the same in JavaScript)."""
    rows: Rows = [{} for _ in range(table["n"])]
    for key, col in table["cols"].items():
        if isinstance(col, list):
            values = col
        elif "dict" in col:
            values = [None if c < 0 else col["dict"][c] for c in col["codes"]]
        else:
            values = [None if d is None else col["base"] + d for d in col["delta"]]
        for row, value in zip(rows, values, strict=True):
            row[key] = value
    return rows


def slug(name: str) -> str:
    """A file- and anchor-safe name; a checksum keeps two names that differ only in odd
    characters apart."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    if clean != name:
        clean = f"{clean}-{zlib.adler32(name.encode()):08x}"
    return clean[:80]


@dataclass(frozen=True, slots=True)
class PageModel:
    """A model's part of the page: its frame, alerts and charts."""

    frame: SeriesFrame
    alerts: list[Alert]
    charts: list[Chart]

    @property
    def anchor(self) -> str:
        return "m-" + slug(self.frame.model)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the page shows, built once and written as HTML and PNGs."""

    title: str
    source: str
    axis: str
    documents: int
    overview: list[Chart]
    models: list[PageModel]
    alerts: list[Alert]
    generated_at: str

    def charts(self) -> list[tuple[str, Chart]]:
        """Every chart with its unique page id (also its PNG file name without suffix)."""
        out = [(f"overview--{c.key}", c) for c in self.overview]
        for model in self.models:
            out += [(f"{slug(model.frame.model)}--{c.key}", c) for c in model.charts]
        return out


def build_report(collection: Collection, *, axis: str, title: str, source: str) -> Report:
    frames = collection.frames()
    alerts = sorted(collection.alerts, key=lambda a: (a.x("time") or 0, a.model))
    by_model: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_model.setdefault(alert.model, []).append(alert)
    models = [
        PageModel(
            frame,
            by_model.get(frame.model, []),
            model_charts(frame, axis, by_model.get(frame.model, [])),
        )
        for frame in frames
    ]
    return Report(
        title=title,
        source=source,
        axis=axis,
        documents=collection.documents,
        overview=overview_charts(frames, axis, alerts),
        models=models,
        alerts=alerts,
        generated_at=datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


# ------------------------------------------------------------------ HTML


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _time(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _last(column: np.ndarray[Any, Any] | None) -> float | None:
    if column is None:
        return None
    finite = column[np.isfinite(column)]
    return float(finite[-1]) if len(finite) else None


def _first(column: np.ndarray[Any, Any]) -> float | None:
    finite = column[np.isfinite(column)]
    return float(finite[0]) if len(finite) else None


def _min(column: np.ndarray[Any, Any]) -> float | None:
    finite = column[np.isfinite(column)]
    return float(finite.min()) if len(finite) else None


def _num_td(value: float | None, digits: int = 4, *, cls: str = "") -> str:
    sort = "" if value is None or math.isnan(value) else f"{value:.6g}"
    klass = f' class="{cls}"' if cls else ""
    return f'<td data-sort="{sort}"{klass}>{cell(value, digits)}</td>'


def _overview_table(report: Report) -> str:
    has_scores = any(m.frame.any_values(m.frame.scores) for m in report.models)
    has_labels = any(m.frame.any_values(m.frame.coverage) for m in report.models)
    head = [
        "model",
        "docs",
        "seq",
        "window",
        "fill",
        "accuracy",
        "Δ since first",
        "lowest",
        "macro F1",
        "MCC",
        "bal. acc.",
        "classes",
        "alerts",
    ]
    if has_scores:
        head += ["macro ROC-AUC", "ECE"]
    if has_labels:
        head += ["waiting", "expired"]
    lines = [
        '<div class=scroll><table class="models sortable"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for model in report.models:
        f = model.frame
        latest = f.latest or {}
        window = latest.get("window", {})
        acc = f.headline["accuracy"]
        last_acc, first_acc = _last(acc), _first(acc)
        delta = None if last_acc is None or first_acc is None else last_acc - first_acc
        fired = sum(a.state == "fired" for a in model.alerts)
        resolved = sum(a.state == "resolved" for a in model.alerts)
        window_text = f"{window.get('kind', '?')} {window.get('size', '?')}" if window else "—"
        classes = len(latest.get("labels", [])) if latest else len(f.recall)
        cells = [
            f'<td data-sort="{_e(f.model)}"><a href="#{model.anchor}">{_e(f.model)}</a></td>',
            f'<td data-sort="{len(f.seq)}">{len(f.seq):,}</td>',
            f'<td data-sort="{int(f.seq[-1]) if len(f.seq) else 0}">'
            f"{int(f.seq[-1]) if len(f.seq) else 0:,}</td>",
            f"<td>{_e(window_text)}</td>",
            _num_td(_last(f.headline["fill"]), 2),
            _num_td(last_acc),
            _num_td(delta, 4, cls="bad" if delta is not None and delta < -0.05 else ""),
            _num_td(_min(acc)),
            _num_td(_last(f.headline["macro_f1"])),
            _num_td(_last(f.headline["mcc"])),
            _num_td(_last(f.headline["balanced_accuracy"])),
            f'<td data-sort="{classes}">{classes}</td>',
            f'<td data-sort="{fired}" class="{"bad" if fired > resolved else ""}">'
            f"{fired} / {resolved}</td>",
        ]
        if has_scores:
            cells += [
                _num_td(_last(f.scores.get("macro_roc_auc"))),
                _num_td(_last(f.scores.get("ece"))),
            ]
        if has_labels:
            cells += [
                _num_td(_last(f.coverage.get("waiting")), 0),
                _num_td(_last(f.coverage.get("expired")), 0),
            ]
        lines.append(f'<tr data-model="{_e(f.model)}">' + "".join(cells) + "</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _alerts_table(alerts: Sequence[Alert], limit: int = 200) -> str:
    if not alerts:
        return ""
    shown = list(reversed(alerts))[:limit]
    note = (
        f"<p class=note>The {limit} most recent of {len(alerts):,} alert documents.</p>"
        if len(alerts) > limit
        else ""
    )
    rows = "".join(
        f'<tr class="{a.state}"><td>{_time(a.x("time"))}</td>'
        f'<td><a href="#m-{_e(slug(a.model))}">{_e(a.model)}</a></td><td>{_e(a.state)}</td>'
        f"<td>{_e(a.source)}: {_e(a.name)}</td><td>{_e(a.metric or '—')}</td>"
        f"<td>{cell(a.value)}</td><td>{cell(a.baseline)}</td>"
        f"<td>{'—' if a.seq is None else f'{a.seq:,}'}</td></tr>"
        for a in shown
    )
    return (
        "<h3>Alerts and detected changes</h3>"
        + note
        + '<table class="alerts sortable"><thead><tr><th>window end / fired (UTC)</th>'
        "<th>model</th><th>state</th><th>what fired</th><th>metric</th><th>value</th>"
        f"<th>baseline</th><th>seq</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _facts(model: PageModel) -> str:
    f = model.frame
    latest = f.latest
    if latest is None:
        return "<p class=facts>No window document with a matrix was read for this model.</p>"
    w = latest.get("window", {})
    parts = [
        f"latest window: {_e(w.get('kind'))}, size {_e(w.get('size'))}, "
        f"{_e(w.get('count'))} records{'' if w.get('full') else ' (not yet full)'}",
        f"records {_e(w.get('first_id'))} … {_e(w.get('last_id'))}",
        f"{_e(w.get('start'))} → {_e(w.get('end'))}",
        f"seq {int(latest['seq']):,}",
        f"{len(f.seq):,} documents",
    ]
    open_alerts = sum(a.state == "fired" for a in model.alerts) - sum(
        a.state == "resolved" for a in model.alerts
    )
    if model.alerts:
        parts.append(f"{len(model.alerts)} alert documents ({max(open_alerts, 0)} open)")
    return "<p class=facts>" + " · ".join(parts) + "</p>"


def render_html(report: Report) -> str:
    charts = report.charts()
    data = {
        cid: {
            "spec": c.spec,
            "data": {k: encode_rows(v) for k, v in c.datasets.items()},
            "title": c.title,
        }
        for cid, c in charts
    }
    payload = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    payload = payload.replace("</", "<\\/")

    def chart_divs(ids: list[tuple[str, Chart]]) -> str:
        return "".join(
            f'<div class="chart" data-chart="{_e(cid)}" title="{_e(c.title)}">'
            f"<span class=placeholder>{_e(c.title)}…</span></div>"
            for cid, c in ids
        )

    overview_ids = [(cid, c) for cid, c in charts if cid.startswith("overview--")]
    sections = []
    for model in report.models:
        ids = [(f"{slug(model.frame.model)}--{c.key}", c) for c in model.charts]
        sections.append(
            f'<section class="model" id="{_e(model.anchor)}" data-model="{_e(model.frame.model)}">'
            f'<h2>{_e(model.frame.model)} <a class=top href="#overview">↑ overview</a></h2>'
            f"{_facts(model)}<div class=charts>{chart_divs(ids)}</div></section>"
        )
    axis_text = "window end time" if report.axis == "time" else "seq"
    buckets = (charts_mod.HEADLINE_BUCKETS, charts_mod.CLASS_BUCKETS, charts_mod.OVERVIEW_BUCKETS)
    body = f"""
<header><h1>{_e(report.title)}</h1>
<p class=meta>{_e(report.source)} · {report.documents:,} window documents · {len(report.models)}
models · {len(report.alerts):,} alert documents · x axis: {axis_text} · generated
{_e(report.generated_at)}</p>
<div class=bar><input id=filter type=search placeholder="filter models by name"
 aria-label="filter models"><span id=status></span></div></header>
<main>
<section id=overview><h2>Models side by side</h2>
<p class=note>Click a column to sort, a model to jump to it; "Δ since first" is the latest
accuracy minus the first; alerts are fired / resolved documents. Long series are downsampled for
drawing: each line keeps the lowest and the highest value of each of up to {buckets[0]} equal
runs of documents ({buckets[1]} for per-class lines, {buckets[2]} on the overview), so no dip or
spike is lost; the tables use every document.</p>
{_overview_table(report)}
<div class=charts>{chart_divs(overview_ids)}</div>
{_alerts_table(report.alerts)}
</section>
{"".join(sections)}
</main>"""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(report.title)}</title><style>{_asset('report.css')}</style>"
        f"<script>{vega_bundle()}</script></head><body>{body}"
        f'<script type="application/json" id="report-data">{payload}</script>'
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def write_pngs(
    report: Report,
    directory: Path,
    *,
    which: str,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Render charts to ``directory`` (``which``: ``all``, ``overview`` or ``none``)."""
    if which == "none":
        return []
    import vl_convert

    directory.mkdir(parents=True, exist_ok=True)
    charts = [
        (cid, c) for cid, c in report.charts() if which == "all" or cid.startswith("overview--")
    ]
    written = []
    for n, (cid, chart) in enumerate(charts, start=1):
        png = vl_convert.vegalite_to_png(chart.full_spec(), scale=PNG_SCALE)
        path = directory / f"{cid}.png"
        path.write_bytes(png)
        written.append(path)
        if progress:
            progress(n, len(charts))
    return written


def _asset(name: str) -> str:
    return (resources.files("flows.tools.report") / name).read_text(encoding="utf-8")
