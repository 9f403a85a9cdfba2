"""Prometheus gauges of each model's latest window, and counters of alerts.

Label cardinality is bounded by configuration, never by the data: at most
``CONFUSION_METRICS_MAX_MODELS`` models get series (later models are skipped, with one warning
each), and per model at most ``CONFUSION_METRICS_MAX_CLASSES`` classes get their own ``class``
label, the first ones seen by this process; the rest are summed under ``class="other"``
(recall = their true positives over their support, precision = over their predictions). So a
process exports at most ``models x (6 + 2 x (classes + 1))`` window series (4 more per model with
delayed labels), plus alert counters per ``(model, source, status)``. An undefined value (e.g.
MCC of a one-class window, the recall of a class absent from the window) is NaN, which no
alerting comparison matches.

The gauges are set when Prometheus scrapes, from each model's latest document, not once per
document: a job emits thousands of documents between two scrapes, and only the last of each
model is ever read. `observe` keeps the document (and admits its model and classes, so which ones
get series does not depend on when scrapes happen); a collector registered before the gauges
sets them at the start of every collection.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import REGISTRY, Collector

from flows.output.alerts import window_fill

HEADLINE_GAUGES = ("accuracy", "balanced_accuracy", "macro_f1", "mcc")
OTHER = "other"

log = logging.getLogger("confusion.gauges")


class _SetOnCollect(Collector):
    """Sets the window gauges from the latest documents when a collection starts.

    Registered before the gauges, so the registry (which collects in registration order)
    reaches it first; it reports no metric of its own.
    """

    def __init__(self, gauges: WindowGauges) -> None:
        self.gauges = gauges

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        self.gauges.flush()
        return []


class WindowGauges:
    """Sets the gauges from window documents and counts alert documents."""

    def __init__(
        self, max_models: int = 100, max_classes: int = 10, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.max_models = max_models
        self.max_classes = max_classes
        # Latest document per model since the last collection; workers of one process share it.
        self._latest: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        registry.register(_SetOnCollect(self))
        self.headline = {
            name: Gauge(
                f"confusion_window_{name}",
                f"{name} of the model's latest window",
                ["model"],
                registry=registry,
            )
            for name in HEADLINE_GAUGES
        }
        self.fill = Gauge(
            "confusion_window_fill",
            "How full the model's latest window is (0..1)",
            ["model"],
            registry=registry,
        )
        self.seq = Gauge(
            "confusion_window_seq",
            "Records of the model counted so far",
            ["model"],
            registry=registry,
        )
        self.recall = Gauge(
            "confusion_class_recall",
            "Recall of a class in the latest window",
            ["model", "class"],
            registry=registry,
        )
        self.precision = Gauge(
            "confusion_class_precision",
            "Precision of a class in the latest window",
            ["model", "class"],
            registry=registry,
        )
        # Delayed labels (documents with a join object): predictions waiting for their label,
        # those that expired unlabeled and those seen, per model; and the window's p95 latency.
        self.join = {
            name: Gauge(
                f"confusion_join_{name}",
                f"Predictions of the model {what} (delayed labels)",
                ["model"],
                registry=registry,
            )
            for name, what in (
                ("waiting", "waiting for their label"),
                ("expired", "that expired unlabeled (CONFUSION_LABEL_TTL) so far"),
                ("seen", "read so far"),
            )
        }
        self.latency_p95 = Gauge(
            "confusion_join_latency_p95_seconds",
            "95th percentile of label latency (label time minus prediction time) in the window",
            ["model"],
            registry=registry,
        )
        self.alerts = Counter(
            "confusion_alerts",
            "Alert transitions (fired, resolved)",
            ["model", "source", "status"],
            registry=registry,
        )
        self._classes: dict[str, list[str]] = {}  # model -> classes with their own label
        self._skipped: set[str] = set()
        self._with_other: set[str] = set()  # models whose "other" series exists
        # Label children looked up once: ``labels()`` costs more than ``set()``.
        self._model_children: dict[str, list[Any]] = {}
        self._class_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _admitted(self, model: str) -> bool:
        if model in self._classes:
            return True
        if len(self._classes) >= self.max_models:
            if model not in self._skipped:
                self._skipped.add(model)
                log.warning(
                    "model %r gets no Prometheus series: CONFUSION_METRICS_MAX_MODELS="
                    "%d models have them already",
                    model,
                    self.max_models,
                )
            return False
        self._classes[model] = []
        for source in ("rule", "detector"):  # at 0 from the start: the first alert is an increase
            for status in ("fired", "resolved"):
                self.alerts.labels(model, source, status)
        return True

    def observe(self, doc: Mapping[str, Any]) -> None:
        """Keep ``doc`` as its model's latest window; the gauges take it at the next scrape."""
        model = doc["model"]
        with self._lock:
            if not self._admitted(model):
                return
            named = self._classes[model]
            if len(named) < self.max_classes:
                for cls in doc["metrics"].get("per_class") or {}:
                    if cls not in named and cls != OTHER and len(named) < self.max_classes:
                        named.append(cls)
            self._latest[model] = doc

    def flush(self) -> None:
        """Set the gauges from every model's latest document observed since the last flush."""
        with self._lock:
            latest, self._latest = self._latest, {}
            for doc in latest.values():
                self._set(doc)

    def _set(self, doc: Mapping[str, Any]) -> None:
        model = doc["model"]
        metrics = doc["metrics"]
        children = self._model_children.get(model)
        if children is None:
            children = self._model_children[model] = [
                *(gauge.labels(model) for gauge in self.headline.values()),
                self.fill.labels(model),
                self.seq.labels(model),
            ]
        for name, child in zip(HEADLINE_GAUGES, children, strict=False):
            child.set(_number(metrics.get(name)))
        children[-2].set(window_fill(doc["window"]))
        children[-1].set(doc["seq"])
        self._per_class(model, metrics.get("per_class") or {})
        join = doc.get("join")
        if join is not None:
            for name, gauge in self.join.items():
                gauge.labels(model).set(join[name])
            p95 = join["latency_ms"]["p95"]
            self.latency_p95.labels(model).set(math.nan if p95 is None else p95 / 1000)

    def _per_class(self, model: str, per_class: Mapping[str, Mapping[str, Any]]) -> None:
        named = self._classes[model]  # admitted by `observe`, in the order first seen
        rest_tp = rest_support = rest_predicted = 0
        for cls, counts in per_class.items():
            if cls not in named:
                rest_tp += counts["tp"]
                rest_support += counts["tp"] + counts["fn"]
                rest_predicted += counts["tp"] + counts["fp"]
        for cls in named:
            found = per_class.get(cls) or {}
            recall, precision = self._class_child(model, cls)
            recall.set(_number(found.get("recall")))
            precision.set(_number(found.get("precision")))
        if rest_support or rest_predicted or model in self._with_other:
            self._with_other.add(model)
            recall, precision = self._class_child(model, OTHER)
            recall.set(_ratio(rest_tp, rest_support))
            precision.set(_ratio(rest_tp, rest_predicted))

    def _class_child(self, model: str, cls: str) -> tuple[Any, Any]:
        key = (model, cls)
        found = self._class_children.get(key)
        if found is None:
            found = self._class_children[key] = (
                self.recall.labels(model, cls),
                self.precision.labels(model, cls),
            )
        return found

    def alerted(self, alert: Mapping[str, Any]) -> None:
        """Count one alert document."""
        model = alert["model"]
        with self._lock:
            if not self._admitted(model):
                return
        self.alerts.labels(model, alert["source"], alert["status"]).inc()


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan
