"""Prometheus gauges of the latest window (flows.output.gauges): caps and the "other" class."""

from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry

from flows.output.gauges import WindowGauges


def window_doc(
    model: str,
    per_class: dict[str, tuple[int, int, int]],
    accuracy: float | None = 0.9,
    seq: int = 100,
) -> dict[str, Any]:
    """``per_class``: class -> (tp, fp, fn)."""
    return {
        "model": model,
        "seq": seq,
        "window": {"kind": "count", "size": 200, "count": 100, "full": False},
        "metrics": {
            "accuracy": accuracy,
            "balanced_accuracy": 0.8,
            "macro_f1": 0.7,
            "mcc": None,
            "per_class": {
                c: {
                    "tp": tp,
                    "fp": fp,
                    "fn": fn,
                    "recall": tp / (tp + fn) if tp + fn else None,
                    "precision": tp / (tp + fp) if tp + fp else None,
                }
                for c, (tp, fp, fn) in per_class.items()
            },
        },
    }


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_headline_gauges_and_undefined_as_nan() -> None:
    registry = CollectorRegistry()
    gauges = WindowGauges(registry=registry)
    gauges.observe(window_doc("m", {"A": (5, 1, 1)}))
    assert value(registry, "confusion_window_accuracy", model="m") == 0.9
    assert value(registry, "confusion_window_fill", model="m") == 0.5
    assert value(registry, "confusion_window_seq", model="m") == 100
    mcc = value(registry, "confusion_window_mcc", model="m")
    assert mcc is not None and math.isnan(mcc)
    assert value(registry, "confusion_alerts_total", model="m", source="rule", status="fired") == 0


def test_classes_beyond_the_cap_are_summed_as_other() -> None:
    registry = CollectorRegistry()
    gauges = WindowGauges(max_classes=2, registry=registry)
    gauges.observe(
        window_doc("m", {"A": (8, 2, 2), "B": (5, 0, 5), "C": (3, 1, 1), "other": (1, 1, 3)})
    )
    assert value(registry, "confusion_class_recall", model="m", **{"class": "A"}) == 0.8
    assert value(registry, "confusion_class_recall", model="m", **{"class": "C"}) is None
    # C and the real class named "other": tp 3 + 1 over support 4 + 4, predictions 4 + 2.
    assert value(registry, "confusion_class_recall", model="m", **{"class": "other"}) == 0.5
    assert value(registry, "confusion_class_precision", model="m", **{"class": "other"}) == 4 / 6
    # A later window without B: B's series says "undefined", not its old value.
    gauges.observe(window_doc("m", {"A": (8, 2, 2)}))
    b = value(registry, "confusion_class_recall", model="m", **{"class": "B"})
    assert b is not None and math.isnan(b)


def test_models_beyond_the_cap_get_no_series() -> None:
    registry = CollectorRegistry()
    gauges = WindowGauges(max_models=1, registry=registry)
    gauges.observe(window_doc("m1", {"A": (1, 0, 0)}))
    gauges.observe(window_doc("m2", {"A": (1, 0, 0)}))
    gauges.alerted({"model": "m2", "source": "rule", "status": "fired"})
    assert value(registry, "confusion_window_accuracy", model="m2") is None
    assert (
        value(registry, "confusion_alerts_total", model="m2", source="rule", status="fired") is None
    )


def test_alert_documents_are_counted() -> None:
    registry = CollectorRegistry()
    gauges = WindowGauges(registry=registry)
    gauges.alerted({"model": "m", "source": "detector", "status": "fired"})
    gauges.alerted({"model": "m", "source": "detector", "status": "resolved"})
    assert (
        value(registry, "confusion_alerts_total", model="m", source="detector", status="fired") == 1
    )
    assert (
        value(registry, "confusion_alerts_total", model="m", source="detector", status="resolved")
        == 1
    )


def test_join_gauges_follow_the_document_join_object() -> None:
    registry = CollectorRegistry()
    gauges = WindowGauges(registry=registry)
    doc = window_doc("m", {"A": (5, 1, 1)})
    gauges.observe(doc)
    assert value(registry, "confusion_join_waiting", model="m") is None  # no join, no series
    doc["join"] = {
        "seen": 120,
        "joined": 100,
        "expired": 7,
        "waiting": 13,
        "latency_ms": {"count": 100, "p50": 800, "p95": 4500, "max": 9000},
    }
    gauges.observe(doc)
    assert value(registry, "confusion_join_waiting", model="m") == 13
    assert value(registry, "confusion_join_expired", model="m") == 7
    assert value(registry, "confusion_join_seen", model="m") == 120
    assert value(registry, "confusion_join_latency_p95_seconds", model="m") == 4.5
    doc["join"]["latency_ms"]["p95"] = None
    gauges.observe(doc)
    latency = value(registry, "confusion_join_latency_p95_seconds", model="m")
    assert latency is not None and math.isnan(latency)
