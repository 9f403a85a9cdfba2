"""Output documents: exactly the contract's shape, keys and types."""

from __future__ import annotations

import json

import pytest

from flows.connectors.elasticsearch.mapping import mappings
from flows.output.documents import Document, WindowInfo, document, document_id, iso_ms
from flows.output.metrics import METRIC_NAMES, ClassMetrics, Metrics
from flows.windows.count import CountWindow
from tests.batches import model_batch
from tests.reference import (
    DOCUMENT_KEYS,
    JOIN_KEYS,
    LATENCY_KEYS,
    OPTIONAL_KEYS,
    PER_CLASS_KEYS,
    SUMMARY_METRICS,
    WINDOW_KEYS,
    Counted,
    assert_documents_match,
    expected_document,
)
from tests.score_reference import SCORES_KEYS

T0 = 1_795_341_600_000  # 2026-11-22T10:00:00.000Z
RECORDS = [
    Counted("r-1", T0 + 250, "zeta", "alpha"),
    Counted(2, T0 + 500, "alpha", "alpha"),
    Counted("r-3", T0 + 750, "Ω", "zeta"),
    Counted("r-4", T0 + 1000, "alpha", "10"),
]


def build(records: list[Counted], size: int, emitted_at: int = T0 + 5000) -> Document:
    window = CountWindow(size)
    window.add(
        model_batch(
            [r.truth for r in records],
            [r.pred for r in records],
            [r.id for r in records],
            [r.ts or 0 for r in records],
        )
    )
    return document("model-é", window.view(), emitted_at)


def test_typed_shapes_and_the_metric_names_are_the_contract_s() -> None:
    """The TypedDicts, the one list of metric names and the index mapping say the same as the
    reference (written independently, from the contract)."""
    assert set(Document.__annotations__) == DOCUMENT_KEYS | OPTIONAL_KEYS
    assert set(WindowInfo.__annotations__) == WINDOW_KEYS
    assert METRIC_NAMES == SUMMARY_METRICS
    assert tuple(Metrics.__annotations__) == (*METRIC_NAMES, "per_class")
    assert tuple(ClassMetrics.__annotations__) == PER_CLASS_KEYS
    mapped = mappings()["properties"]
    assert set(mapped["metrics"]["properties"]) == {*METRIC_NAMES, "per_class"}
    assert set(mapped["window"]["properties"]) == WINDOW_KEYS
    assert set(mapped["scores"]["properties"]) == SCORES_KEYS
    assert set(mapped["join"]["properties"]) == JOIN_KEYS
    assert set(mapped["join"]["properties"]["latency_ms"]["properties"]) == LATENCY_KEYS


def test_document_has_exactly_the_contract_keys_and_types() -> None:
    doc = build(RECORDS, 3)
    assert set(doc) == DOCUMENT_KEYS
    assert set(doc["window"]) == WINDOW_KEYS
    assert set(doc["metrics"]) == {*SUMMARY_METRICS, "per_class"}
    for values in doc["metrics"]["per_class"].values():
        assert tuple(values) == PER_CLASS_KEYS
        assert all(type(values[k]) is int for k in ("tp", "fp", "fn", "tn", "support"))
    assert doc["window"]["kind"] == "count"
    assert type(doc["seq"]) is int and type(doc["window"]["count"]) is int
    assert type(doc["window"]["full"]) is bool
    assert all(type(cell) is int for row in doc["matrix"] for cell in row)
    assert doc["emitted_at"] == "2026-11-22T10:00:05.000Z"
    json.dumps(doc, allow_nan=False)  # plain JSON types only, no NaN


def test_document_equals_the_reference_document() -> None:
    for size in (1, 3, 4, 10):
        doc = build(RECORDS, size)
        expected = expected_document("model-é", RECORDS, {"zeta", "alpha", "Ω", "10"}, size)
        assert_documents_match([doc], {("model-é", 4): expected})


def test_labels_are_sorted_and_the_matrix_follows_them() -> None:
    doc = build(RECORDS, 10)
    assert doc["labels"] == ["10", "alpha", "zeta", "Ω"]
    assert doc["matrix"] == [[0, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]


def test_window_fields_of_a_window_not_yet_full() -> None:
    doc = build(RECORDS[:2], 5)
    assert doc["window"] == {
        "kind": "count",
        "size": 5,
        "count": 2,
        "full": False,
        "first_id": "r-1",
        "last_id": 2,
        "start": "2026-11-22T10:00:00.250Z",
        "end": "2026-11-22T10:00:00.500Z",
    }


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (T0 + 250, "2026-11-22T10:00:00.250Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),  # RFC 3339 years have four digits
        (-30_610_224_000_000, "1000-01-01T00:00:00.000Z"),
        (-30_610_224_000_001, "0999-12-31T23:59:59.999Z"),
    ],
)
def test_times_are_rfc3339_utc_with_milliseconds(epoch_ms: int, text: str) -> None:
    assert iso_ms(epoch_ms) == text


def test_document_id_is_model_kind_and_seq() -> None:
    assert document_id(build(RECORDS, 2)) == "model-é/count/4"
