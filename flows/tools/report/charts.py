"""Vega-Lite specifications of every chart of the report, as plain dicts with their data.

A chart's data travels next to its spec (``Chart.datasets``, referenced by name), so the page can
ship it as compact columns and the PNG renderer can hand it to vl-convert as rows: the same spec,
the same Vega renderer, in the browser and in the picture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flows.tools.report.series import (
    COVERAGE_SERIES,
    HEADLINE,
    HEADLINE_TITLES,
    LATENCY_SERIES,
    SCORE_TITLES,
    Alert,
    SeriesFrame,
    long_rows,
    nan_to_none,
)

Spec = dict[str, Any]
Rows = list[dict[str, Any]]

LINE_WIDTH = 560
LINE_HEIGHT = 220
# min/max buckets per series: headline metrics keep up to 2 x 200 points, per-class lines 2 x 100.
HEADLINE_BUCKETS = 200
CLASS_BUCKETS = 100
OVERVIEW_BUCKETS = 150
MAX_CELL_TEXT_CLASSES = 25
METRIC_COLORS = {
    "accuracy": "#1f77b4",
    "macro F1": "#ff7f0e",
    "MCC": "#2ca02c",
    "balanced accuracy": "#9467bd",
}


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: a stable id (also the PNG's name), a title, a spec and its named datasets."""

    key: str
    title: str
    spec: Spec
    datasets: dict[str, Rows] = field(default_factory=dict)

    def full_spec(self) -> Spec:
        """The spec with its data inline, as vl-convert renders it to PNG."""
        return {**self.spec, "datasets": self.datasets}


def _x_encoding(axis: str) -> dict[str, Any]:
    if axis == "time":
        return {
            "field": "x",
            "type": "temporal",
            "title": "window end (UTC)",
            "scale": {"type": "utc"},
            "axis": {"labelAngle": 0, "labelOverlap": True},
        }
    return {
        "field": "x",
        "type": "quantitative",
        "title": "seq (records of the model)",
        "axis": {"format": "~s"},
    }


def _x_tooltip(axis: str) -> dict[str, Any]:
    if axis == "time":
        return {
            "field": "x",
            "type": "temporal",
            "title": "window end (UTC)",
            "timeUnit": "utcyearmonthdatehoursminutesseconds",
        }
    return {"field": "x", "type": "quantitative", "title": "seq", "format": ","}


def alert_rows(alerts: Sequence[Alert], axis: str) -> Rows:
    rows = []
    for alert in alerts:
        x = alert.x(axis)
        if x is None:
            continue
        what = f"{alert.source} {alert.name}" + (f" on {alert.metric}" if alert.metric else "")
        rows.append(
            {
                "x": x,
                "state": alert.state,
                "source": alert.source,
                "what": what,
                "value": alert.value,
                "baseline": alert.baseline,
            }
        )
    return rows


def _alert_layer(axis: str) -> Spec:
    """Vertical rules where alerts fired (red) or resolved (green); detectors dashed."""
    return {
        "data": {"name": "alerts"},
        "mark": {"type": "rule", "strokeWidth": 2, "opacity": 0.8},
        "encoding": {
            "x": {"field": "x", "type": "temporal" if axis == "time" else "quantitative"},
            "color": {
                "condition": {"test": "datum.state === 'resolved'", "value": "#2ca02c"},
                "value": "#d62728",
            },
            "strokeDash": {
                "condition": {"test": "datum.source === 'detector'", "value": [5, 3]},
                "value": [1, 0],
            },
            "tooltip": [
                {"field": "state"},
                {"field": "what", "title": "what"},
                {"field": "value", "format": ".4f"},
                {"field": "baseline", "format": ".4f"},
                _x_tooltip(axis),
            ],
        },
    }


def _lines(
    axis: str,
    *,
    y_title: str,
    color: dict[str, Any],
    y_scale: Spec | None = None,
    y_format: str = ".3f",
) -> list[Spec]:
    """A line per series plus invisible points that carry the tooltips.

    Clicking a legend entry highlights its line (shift-click adds more), which is what makes
    twenty per-class lines readable.
    """
    y: dict[str, Any] = {"field": "y", "type": "quantitative", "title": y_title}
    if y_scale:
        y["scale"] = y_scale
    encoding = {"x": _x_encoding(axis), "y": y, "color": color}
    return [
        {
            "params": [
                {
                    "name": "pick",
                    "select": {"type": "point", "fields": ["series"]},
                    "bind": "legend",
                }
            ],
            "mark": {"type": "line", "strokeWidth": 1.5, "interpolate": "linear"},
            "encoding": {
                **encoding,
                "opacity": {"condition": {"param": "pick", "value": 1}, "value": 0.12},
            },
        },
        {
            "mark": {"type": "point", "opacity": 0, "size": 40, "filled": True},
            "encoding": {
                **encoding,
                "tooltip": [
                    {"field": "series", "title": "series"},
                    {"field": "y", "format": y_format},
                    _x_tooltip(axis),
                ],
            },
        },
    ]


def _time_chart(
    key: str,
    title: str,
    axis: str,
    rows: Rows,
    alerts: Rows,
    layers: list[Spec],
    *,
    subtitle: str | None = None,
) -> Chart:
    title_spec: dict[str, Any] = {"text": title, "anchor": "start"}
    if alerts:
        marks = "alerts: red fired, green resolved, dashed = detector"
        title_spec["subtitle"] = f"{subtitle}; {marks}" if subtitle else marks
        layers = [*layers, _alert_layer(axis)]
    elif subtitle:
        title_spec["subtitle"] = subtitle
    spec: Spec = {
        "title": title_spec,
        "width": LINE_WIDTH,
        "height": LINE_HEIGHT,
        "data": {"name": "main"},
        "layer": layers,
    }
    datasets = {"main": rows}
    if alerts:
        datasets["alerts"] = alerts
    return Chart(key, title, spec, datasets)


def headline_chart(frame: SeriesFrame, axis: str, alerts: Rows) -> Chart:
    """Accuracy, macro F1, MCC and balanced accuracy over time, on the window fill."""
    x = frame.x(axis)
    rows = long_rows(x, {k: frame.headline[k] for k in HEADLINE}, HEADLINE_BUCKETS, HEADLINE_TITLES)
    fill = long_rows(x, {"fill": frame.headline["fill"]}, HEADLINE_BUCKETS, HEADLINE_TITLES)
    lowest = min([0.0, *(r["y"] for r in rows)])
    color = {
        "field": "series",
        "type": "nominal",
        "title": None,
        "scale": {"domain": list(METRIC_COLORS), "range": list(METRIC_COLORS.values())},
        "legend": {"orient": "bottom"},
    }
    layers = [
        {
            "data": {"name": "fill"},
            "mark": {
                "type": "area",
                "color": "#c7c7c7",
                "opacity": 0.25,
                "interpolate": "step-after",
            },
            "encoding": {
                "x": _x_encoding(axis),
                "y": {"field": "y", "type": "quantitative"},
                "tooltip": [
                    {"field": "y", "title": "window fill", "format": ".0%"},
                    _x_tooltip(axis),
                ],
            },
        },
        *_lines(
            axis,
            y_title="value",
            color=color,
            y_scale={"domain": [math.floor(lowest * 10) / 10, 1]},
        ),
    ]
    chart = _time_chart(
        "metrics", "Headline metrics", axis, rows, alerts, layers, subtitle="grey area: window fill"
    )
    chart.datasets["fill"] = fill
    return chart


def _class_color(n: int) -> dict[str, Any]:
    return {
        "field": "series",
        "type": "nominal",
        "title": "class",
        "scale": {"scheme": "category10" if n <= 10 else "category20"},
        "legend": {"columns": 1 if n <= 12 else 2, "symbolLimit": 40, "labelLimit": 90},
    }


def per_class_chart(frame: SeriesFrame, axis: str, which: str, alerts: Rows) -> Chart:
    columns = frame.recall if which == "recall" else frame.precision
    rows = long_rows(frame.x(axis), dict(sorted(columns.items())), CLASS_BUCKETS)
    layers = _lines(
        axis, y_title=which, color=_class_color(len(columns)), y_scale={"domain": [0, 1]}
    )
    return _time_chart(which, f"Per-class {which}", axis, rows, alerts, layers)


def heatmap_chart(doc: Mapping[str, Any], *, normalized: bool) -> Chart:
    """The latest window's matrix: counts, or each row divided by its total (recall view)."""
    labels = [str(label) for label in doc["labels"]]
    matrix = np.asarray(doc["matrix"], dtype=np.int64).reshape(len(labels), len(labels))
    totals = matrix.sum(axis=1)
    rows = []
    for i, truth in enumerate(labels):
        for j, pred in enumerate(labels):
            share = matrix[i, j] / totals[i] if totals[i] else None
            rows.append(
                {
                    "t": truth,
                    "p": pred,
                    "n": int(matrix[i, j]),
                    "r": None if share is None else round(float(share), 4),
                }
            )
    n = max(len(labels), 1)
    cell = 52 if n <= 4 else 40 if n <= 8 else 28 if n <= 12 else 22
    value = "r" if normalized else "n"
    color_scale: Spec = (
        {"domain": [0, 1], "scheme": "blues"}
        if normalized
        else {"type": "sqrt", "scheme": "blues", "domainMin": 0}
    )
    biggest = float(matrix.max()) if matrix.size else 0.0
    dark_at = 0.55 if normalized else (0.55**2) * biggest
    axis_labels = {"labelLimit": 110, "labelFontSize": 10 if n > 12 else 11}
    layers: list[Spec] = [
        {
            "mark": {"type": "rect", "stroke": "#ffffff", "strokeWidth": 0.5},
            "encoding": {
                "color": {
                    "field": value,
                    "type": "quantitative",
                    "scale": color_scale,
                    "title": "recall" if normalized else "records",
                    "legend": {"format": ".0%" if normalized else "~s"},
                },
                "tooltip": [
                    {"field": "t", "title": "true"},
                    {"field": "p", "title": "predicted"},
                    {"field": "n", "title": "records", "format": ","},
                    {"field": "r", "title": "share of the true class", "format": ".1%"},
                ],
            },
        }
    ]
    if n <= MAX_CELL_TEXT_CLASSES:
        text_format = ".0%" if normalized else ",.0f" if biggest < 10_000 else ".2~s"
        layers.append(
            {
                "mark": {"type": "text", "fontSize": 9 if n > 12 else 11},
                "encoding": {
                    "text": {"field": value, "type": "quantitative", "format": text_format},
                    "color": {
                        "condition": {"test": f"datum.{value} > {dark_at}", "value": "white"},
                        "value": "#222222",
                    },
                },
            }
        )
    view = "row-normalized (recall)" if normalized else "counts"
    window = doc.get("window", {})
    subtitle = (
        f"seq {doc.get('seq')}, {window.get('count', '?')} records, "
        f"window end {window.get('end', '?')}"
    )
    spec: Spec = {
        "title": {"text": f"Latest window: {view}", "subtitle": subtitle, "anchor": "start"},
        "width": cell * n,
        "height": cell * n,
        "data": {"name": "main"},
        "encoding": {
            "x": {
                "field": "p",
                "type": "nominal",
                "sort": labels,
                "title": "predicted",
                "axis": {**axis_labels, "labelAngle": -45 if n > 6 else 0, "orient": "top"},
            },
            "y": {
                "field": "t",
                "type": "nominal",
                "sort": labels,
                "title": "true",
                "axis": axis_labels,
            },
        },
        "layer": layers,
    }
    return Chart(
        "recall-matrix" if normalized else "matrix", f"Latest window, {view}", spec, {"main": rows}
    )


def scores_chart(frame: SeriesFrame, axis: str, alerts: Rows) -> Chart:
    rows = long_rows(frame.x(axis), frame.scores, HEADLINE_BUCKETS, SCORE_TITLES)
    color = {"field": "series", "type": "nominal", "title": None, "legend": {"orient": "bottom"}}
    layers = _lines(axis, y_title="value", color=color, y_scale={"domain": [0, 1]})
    return _time_chart(
        "scores",
        "Score quality",
        axis,
        rows,
        alerts,
        layers,
        subtitle="ROC-AUC and AP: higher is better; Brier and ECE: lower",
    )


def _columns_to_rows(value: Any) -> list[dict[str, Any]] | None:
    """``{"a": [..], "b": [..]}`` (how the job writes tables) as rows; rows stay rows."""
    if isinstance(value, list):
        return [row for row in value if isinstance(row, dict)]
    if isinstance(value, dict):
        columns = {k: v for k, v in value.items() if isinstance(v, list)}
        if columns:
            n = min(len(v) for v in columns.values())
            return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    return None


def _bins(scores: Mapping[str, Any]) -> list[dict[str, Any]]:
    for holder in (
        scores,
        scores.get("ece") if isinstance(scores.get("ece"), dict) else {},
        scores.get("calibration") if isinstance(scores.get("calibration"), dict) else {},
    ):
        for key in ("reliability", "reliability_bins", "bins"):
            rows = _columns_to_rows(holder.get(key) if isinstance(holder, dict) else None)
            if rows:
                return rows
    return []


def _get(row: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return None


def reliability_chart(scores: Mapping[str, Any]) -> Chart | None:
    """Reliability diagram of the latest window: accuracy against mean confidence per bin."""
    rows = []
    for b in _bins(scores):
        conf = _get(b, "mean_confidence", "confidence", "conf")
        acc = _get(b, "accuracy", "acc")
        count = _get(b, "count", "n")
        if isinstance(conf, int | float) and isinstance(acc, int | float) and count:
            rows.append(
                {"conf": round(float(conf), 4), "acc": round(float(acc), 4), "count": int(count)}
            )
    if not rows:
        return None
    ece = scores.get("ece")
    ece_value = ece.get("value") if isinstance(ece, dict) else ece
    subtitle = f"ECE {ece_value:.4f}" if isinstance(ece_value, int | float) else "ECE null"
    axis_spec = {"type": "quantitative", "scale": {"domain": [0, 1]}}
    spec: Spec = {
        "title": {
            "text": "Reliability (latest window)",
            "anchor": "start",
            "subtitle": f"{subtitle}; diagonal = perfectly calibrated; dot area = records",
        },
        "width": 300,
        "height": 300,
        "layer": [
            {
                "data": {"values": [{"a": 0, "b": 0}, {"a": 1, "b": 1}]},
                "mark": {"type": "line", "color": "#999999", "strokeDash": [4, 4]},
                "encoding": {"x": {"field": "a", **axis_spec}, "y": {"field": "b", **axis_spec}},
            },
            {
                "data": {"name": "main"},
                "mark": {"type": "line", "color": "#1f77b4", "point": False},
                "encoding": {
                    "x": {"field": "conf", "title": "mean confidence", **axis_spec},
                    "y": {"field": "acc", "title": "accuracy", **axis_spec},
                },
            },
            {
                "data": {"name": "main"},
                "mark": {"type": "circle", "color": "#1f77b4", "opacity": 0.8},
                "encoding": {
                    "x": {"field": "conf", **axis_spec},
                    "y": {"field": "acc", **axis_spec},
                    "size": {"field": "count", "type": "quantitative", "legend": None},
                    "tooltip": [
                        {"field": "conf", "title": "mean confidence", "format": ".3f"},
                        {"field": "acc", "title": "accuracy", "format": ".3f"},
                        {"field": "count", "title": "records", "format": ","},
                    ],
                },
            },
        ],
    }
    return Chart("reliability", "Reliability diagram", spec, {"main": rows})


def threshold_rows(scores: Mapping[str, Any]) -> Rows:
    table = _columns_to_rows(_get(scores, "thresholds", "threshold_table")) or []
    rows = []
    for row in table:
        values = {
            k: _get(row, *names)
            for k, names in (
                ("threshold", ("threshold", "t")),
                ("precision", ("precision",)),
                ("recall", ("recall", "tpr")),
                ("fpr", ("fpr", "false_positive_rate")),
                ("f1", ("f1",)),
            )
        }
        if isinstance(values["threshold"], int | float):
            rows.append({k: None if v is None else round(float(v), 4) for k, v in values.items()})
    return rows


def curve_chart(scores: Mapping[str, Any], which: str) -> Chart | None:
    """ROC (recall against false-positive rate) or PR (precision against recall) curve.

    Built from the two-class threshold table, one point per bin edge, ordered by threshold.
    """
    rows = threshold_rows(scores)
    x_field, y_field = ("fpr", "recall") if which == "roc" else ("recall", "precision")
    rows = [r for r in rows if r[x_field] is not None and r[y_field] is not None]
    if len(rows) < 2:
        return None
    if which == "roc":  # above every score nothing is predicted positive: the curve's origin
        rows.append({"threshold": 1.0, "precision": None, "recall": 0.0, "fpr": 0.0, "f1": None})
    auc_key = "roc_auc" if which == "roc" else "average_precision"
    per_class = scores.get("per_class") if isinstance(scores.get("per_class"), dict) else {}
    table = scores.get("thresholds")
    positive = (
        (table.get("positive") if isinstance(table, dict) else None)
        or scores.get("positive")
        or scores.get("positive_class")
    )
    area = None
    if positive is not None and isinstance(per_class, dict):
        area = (per_class.get(str(positive)) or {}).get(auc_key)
    title = "ROC curve" if which == "roc" else "Precision-recall curve"
    subtitle = f"positive class {positive}" if positive is not None else "two-class model"
    if isinstance(area, int | float):
        subtitle += f"; {'ROC-AUC' if which == 'roc' else 'AP'} {area:.4f}"
    axis_spec = {"type": "quantitative", "scale": {"domain": [0, 1]}}
    color = "#d62728" if which == "roc" else "#9467bd"
    titles = {
        "fpr": "false-positive rate",
        "recall": "recall (true-positive rate)",
        "precision": "precision",
    }
    layers: list[Spec] = []
    if which == "roc":
        layers.append(
            {
                "data": {"values": [{"a": 0, "b": 0}, {"a": 1, "b": 1}]},
                "mark": {"type": "line", "color": "#999999", "strokeDash": [4, 4]},
                "encoding": {"x": {"field": "a", **axis_spec}, "y": {"field": "b", **axis_spec}},
            }
        )
    layers.append(
        {
            "data": {"name": "main"},
            "mark": {"type": "line", "color": color, "point": {"size": 16, "color": color}},
            "encoding": {
                "x": {"field": x_field, "title": titles[x_field], **axis_spec},
                "y": {"field": y_field, "title": titles[y_field], **axis_spec},
                "order": {"field": "threshold", "type": "quantitative", "sort": "descending"},
                "tooltip": [
                    {"field": "threshold", "format": ".2f"},
                    {"field": "precision", "format": ".3f"},
                    {"field": "recall", "format": ".3f"},
                    {"field": "fpr", "title": "false-positive rate", "format": ".3f"},
                    {"field": "f1", "title": "F1", "format": ".3f"},
                ],
            },
        }
    )
    spec: Spec = {
        "title": {"text": f"{title} (latest window)", "subtitle": subtitle, "anchor": "start"},
        "width": 300,
        "height": 300,
        "layer": layers,
    }
    return Chart(which, title, spec, {"main": rows})


def class_auc_chart(scores: Mapping[str, Any]) -> Chart | None:
    """Per-class one-vs-rest ROC-AUC and AP of the latest window (multi-class models)."""
    per_class = scores.get("per_class")
    if not isinstance(per_class, dict):
        return None
    rows = []
    for label, values in sorted(per_class.items()):
        if not isinstance(values, dict):
            continue
        for key, title in (("roc_auc", "ROC-AUC"), ("average_precision", "AP")):
            value = values.get(key)
            if isinstance(value, int | float):
                rows.append({"class": str(label), "measure": title, "value": round(value, 4)})
    if not rows:
        return None
    spec: Spec = {
        "title": {
            "text": "Per-class ranking quality (latest window)",
            "anchor": "start",
            "subtitle": "one class against the rest",
        },
        "width": 300,
        "height": {"step": 11},
        "data": {"name": "main"},
        "mark": {"type": "bar"},
        "encoding": {
            "y": {"field": "class", "type": "nominal", "title": None},
            "yOffset": {"field": "measure"},
            "x": {
                "field": "value",
                "type": "quantitative",
                "scale": {"domain": [0, 1]},
                "title": None,
            },
            "color": {
                "field": "measure",
                "type": "nominal",
                "title": None,
                "legend": {"orient": "bottom"},
            },
            "tooltip": [
                {"field": "class"},
                {"field": "measure"},
                {"field": "value", "format": ".4f"},
            ],
        },
    }
    return Chart("class-auc", "Per-class ROC-AUC and AP", spec, {"main": rows})


def coverage_chart(frame: SeriesFrame, axis: str, alerts: Rows) -> Chart:
    rows = long_rows(
        frame.x(axis),
        {k: frame.coverage[k] for k in COVERAGE_SERIES if k in frame.coverage},
        HEADLINE_BUCKETS,
    )
    color = {
        "field": "series",
        "type": "nominal",
        "title": "predictions",
        "scale": {
            "domain": list(COVERAGE_SERIES),
            "range": ["#7f7f7f", "#2ca02c", "#d62728", "#ff7f0e"],
        },
        "legend": {"orient": "bottom"},
    }
    layers = _lines(axis, y_title="predictions", color=color, y_format=",.0f")
    return _time_chart(
        "coverage",
        "Label coverage",
        axis,
        rows,
        alerts,
        layers,
        subtitle="predictions seen, joined with a label, expired unlabeled, waiting",
    )


def latency_chart(frame: SeriesFrame, axis: str, alerts: Rows) -> Chart:
    seconds = {k: frame.latency[k] / 1000.0 for k in LATENCY_SERIES if k in frame.latency}
    rows = long_rows(frame.x(axis), seconds, HEADLINE_BUCKETS)
    color = {
        "field": "series",
        "type": "nominal",
        "title": None,
        "scale": {"domain": list(LATENCY_SERIES)},
        "legend": {"orient": "bottom"},
    }
    layers = _lines(axis, y_title="label latency (s)", color=color, y_format=",.1f")
    return _time_chart(
        "latency",
        "Label latency",
        axis,
        rows,
        alerts,
        layers,
        subtitle="label time minus prediction time, per window",
    )


def model_charts(frame: SeriesFrame, axis: str, alerts: Sequence[Alert]) -> list[Chart]:
    """Every chart of one model, in page order; charts whose fields are absent are left out."""
    marks = alert_rows(alerts, axis)
    charts: list[Chart] = []
    if frame.latest is not None:
        charts += [
            heatmap_chart(frame.latest, normalized=False),
            heatmap_chart(frame.latest, normalized=True),
        ]
    charts.append(headline_chart(frame, axis, marks))
    if frame.any_values(frame.recall):
        charts.append(per_class_chart(frame, axis, "recall", marks))
        charts.append(per_class_chart(frame, axis, "precision", marks))
    if frame.any_values(frame.scores):
        charts.append(scores_chart(frame, axis, marks))
    latest_scores = frame.latest.get("scores") if frame.latest else None
    if isinstance(latest_scores, dict):
        optional = [
            reliability_chart(latest_scores),
            curve_chart(latest_scores, "roc"),
            curve_chart(latest_scores, "pr"),
        ]
        if len(frame.latest.get("labels", [])) > 2 if frame.latest else False:
            optional.append(class_auc_chart(latest_scores))
        charts += [c for c in optional if c is not None]
    if frame.any_values(frame.coverage):
        charts.append(coverage_chart(frame, axis, marks))
    if frame.any_values(frame.latency):
        charts.append(latency_chart(frame, axis, marks))
    return charts


# ------------------------------------------------------------------ overview


def latest_metrics_chart(frames: Sequence[SeriesFrame]) -> Chart:
    """One row per model, its latest window's headline metrics as dots; worst accuracy on top."""
    rows = []
    for frame in frames:
        for key in HEADLINE:
            column = frame.headline[key]
            finite = column[np.isfinite(column)]
            if len(finite):
                rows.append(
                    {
                        "model": frame.model,
                        "series": HEADLINE_TITLES[key],
                        "y": round(float(finite[-1]), 4),
                    }
                )
    order = sorted(frames, key=lambda f: _last(f.headline["accuracy"]))
    spec: Spec = {
        "title": {
            "text": "Latest window of every model",
            "anchor": "start",
            "subtitle": "sorted by accuracy, worst first",
        },
        "width": LINE_WIDTH,
        "height": {"step": 18},
        "data": {"name": "main"},
        "mark": {"type": "point", "filled": True, "size": 70, "opacity": 0.9},
        "encoding": {
            "y": {
                "field": "model",
                "type": "nominal",
                "sort": [f.model for f in order],
                "title": None,
                "axis": {"labelLimit": 160},
            },
            "x": {"field": "y", "type": "quantitative", "title": "value", "scale": {"zero": False}},
            "color": {
                "field": "series",
                "type": "nominal",
                "title": None,
                "scale": {"domain": list(METRIC_COLORS), "range": list(METRIC_COLORS.values())},
                "legend": {"orient": "top"},
            },
            "tooltip": [
                {"field": "model"},
                {"field": "series", "title": "metric"},
                {"field": "y", "title": "value", "format": ".4f"},
            ],
        },
    }
    return Chart("overview-latest", "Latest window of every model", spec, {"main": rows})


def _last(column: np.ndarray[Any, Any]) -> float:
    finite = column[np.isfinite(column)]
    return float(finite[-1]) if len(finite) else math.inf


def accuracy_overview_chart(
    frames: Sequence[SeriesFrame], axis: str, alerts: Sequence[Alert]
) -> Chart:
    """Every model's accuracy over time on one chart; beyond 20 models lines are not colored."""
    rows: Rows = []
    for frame in frames:
        for row in long_rows(
            frame.x(axis), {frame.model: frame.headline["accuracy"]}, OVERVIEW_BUCKETS
        ):
            rows.append(row)
    many = len(frames) > 20
    color: dict[str, Any] = (
        {"value": "#4c78a8"}
        if many
        else {
            "field": "series",
            "type": "nominal",
            "title": "model",
            "scale": {"scheme": "category20" if len(frames) > 10 else "category10"},
        }
    )
    layers: list[Spec] = [
        {
            "mark": {"type": "line", "strokeWidth": 1.2, "opacity": 0.5 if many else 0.9},
            "encoding": {
                "x": _x_encoding(axis),
                "y": {"field": "y", "type": "quantitative", "title": "accuracy"},
                "detail": {"field": "series"},
                "color": color,
            },
        },
        {
            "mark": {"type": "point", "opacity": 0, "size": 40},
            "encoding": {
                "x": _x_encoding(axis),
                "y": {"field": "y", "type": "quantitative"},
                "tooltip": [
                    {"field": "series", "title": "model"},
                    {"field": "y", "title": "accuracy", "format": ".4f"},
                    _x_tooltip(axis),
                ],
            },
        },
    ]
    subtitle = "one line per model (hover for its name)" if many else None
    fired = [a for a in alerts if a.state == "fired"]
    return _time_chart(
        "overview-accuracy",
        "Accuracy of every model",
        axis,
        rows,
        alert_rows(fired, axis),
        layers,
        subtitle=subtitle,
    )


def overview_charts(
    frames: Sequence[SeriesFrame], axis: str, alerts: Sequence[Alert]
) -> list[Chart]:
    return [latest_metrics_chart(frames), accuracy_overview_chart(frames, axis, alerts)]


def cell(value: float | None, digits: int = 4) -> str:
    """A metric for a table cell: fixed digits, an em dash for undefined."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


__all__ = ["Chart", "cell", "model_charts", "nan_to_none", "overview_charts"]
