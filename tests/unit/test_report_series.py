"""The report's pure parts: folding documents, downsampling, the page's data encoding, charts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.tools.report.charts import heatmap_chart, model_charts
from flows.tools.report.page import decode_columns, encode_rows, slug
from flows.tools.report.series import (
    Collection,
    DocumentError,
    Selection,
    check_window_doc,
    is_alert_doc,
    minmax_indices,
    parse_alert,
    parse_time_ms,
    window_fill,
)
from tests.report_docs import alert_doc, window_docs

values = st.lists(st.one_of(st.floats(-5, 5), st.just(math.nan)), min_size=0, max_size=400)


@given(values, st.integers(1, 60))
def test_minmax_keeps_extremes_and_bounds_points(ys: list[float], buckets: int) -> None:
    y = np.array(ys, dtype=np.float64)
    picked = minmax_indices(y, buckets)
    finite = np.flatnonzero(np.isfinite(y))
    assert len(picked) <= 2 * buckets + 2
    if len(finite):
        assert picked[0] == finite[0] and picked[-1] == finite[-1]
    assert list(picked) == sorted(set(picked.tolist()))  # ordered, no repeats
    assert set(picked.tolist()) <= set(finite.tolist())  # never a NaN
    if len(finite) <= 2 * buckets:  # short series drawn whole, but for flat stretches
        v = y[finite]
        flat = [
            i
            for k, i in enumerate(finite.tolist())
            if 0 < k < len(v) - 1 and v[k - 1] == v[k] == v[k + 1]
        ]
        assert picked.tolist() == [i for i in finite.tolist() if i not in flat]
    if len(finite):
        chosen = y[picked]
        assert chosen.min() == y[finite].min() and chosen.max() == y[finite].max()


def test_minmax_keeps_a_one_point_dip_in_a_long_series() -> None:
    y = np.full(100_000, 0.9)
    y[61_234] = 0.2
    picked = minmax_indices(y, 250)
    assert len(picked) <= 500
    assert 61_234 in picked.tolist()
    assert picked.tolist() == [0, 61_200, 61_234, 61_600, 99_999]  # its bucket's ends, the ends


def test_a_flat_series_is_two_points() -> None:
    assert minmax_indices(np.ones(10_000), 250).tolist() == [0, 9_999]


rows = st.lists(
    st.fixed_dictionaries(
        {
            "x": st.one_of(st.none(), st.integers(1_700_000_000_000, 1_900_000_000_000)),
            "series": st.one_of(st.none(), st.sampled_from(["a", "b", "é</script>"])),
            "y": st.one_of(st.none(), st.floats(-1, 1)),
            "n": st.integers(-5, 5),
        }
    ),
    max_size=30,
)


@given(rows)
def test_page_columns_round_trip(data: list[dict[str, Any]]) -> None:
    assert decode_columns(encode_rows(data)) == data


def test_slug_is_safe_and_keeps_odd_names_apart() -> None:
    assert slug("model1") == "model1"
    a, b = slug("fraud/v2"), slug("fraud v2")
    assert a != b and a.startswith("fraud-v2-") and "/" not in a


def test_collection_sorts_by_seq_keeps_last_duplicate_and_newest_matrix() -> None:
    docs = list(window_docs("m", 5, seed=1))
    replay = {**docs[2], "metrics": {**docs[2]["metrics"], "accuracy": 0.123}}
    collection = Collection()
    for doc in [docs[4], docs[0], docs[2], docs[1], docs[3], replay]:
        collection.add_window(doc)
    (frame,) = collection.frames()
    assert frame.seq.tolist() == [100, 200, 300, 400, 500]
    assert frame.headline["accuracy"][2] == 0.123  # the replayed document read last wins
    assert frame.headline["accuracy"][4] == docs[4]["metrics"]["accuracy"]
    assert frame.latest is docs[4]
    assert frame.time_ms.tolist() == sorted(frame.time_ms.tolist())
    assert frame.headline["fill"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_selection_filters_models_and_window_end() -> None:
    docs = [*window_docs("a", 10, seed=1), *window_docs("b", 10, seed=2)]
    since = parse_time_ms(docs[3]["window"]["end"])
    until = parse_time_ms(docs[6]["window"]["end"])
    collection = Collection(Selection(frozenset({"a"}), since, until))
    for doc in docs:
        collection.add_window(doc)
    assert list(collection.models) == ["a"]
    assert collection.frames()[0].seq.tolist() == [400, 500, 600, 700]
    assert collection.skipped == 16


def test_per_class_columns_pad_classes_that_appear_late() -> None:
    first, second = list(window_docs("m", 2, classes=3, seed=1))
    first["metrics"]["per_class"].pop("C")
    collection = Collection()
    collection.add_window(first)
    collection.add_window(second)
    recall = collection.frames()[0].recall
    assert (
        math.isnan(recall["C"][0])
        and recall["C"][1] == second["metrics"]["per_class"]["C"]["recall"]
    )


def test_window_fill_of_count_and_time_windows() -> None:
    assert window_fill({"kind": "count", "size": 1000, "count": 250}) == 0.25
    time_window = {
        "kind": "time",
        "size": 60_000,
        "full": False,
        "start": "2026-11-22T10:00:00.000Z",
        "end": "2026-11-22T10:00:30.000Z",
    }
    assert window_fill(time_window) == 0.5
    assert window_fill({**time_window, "full": True}) == 1.0
    assert math.isnan(window_fill({"kind": "count"}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "document version 2 is not supported"),
        ({"matrix": [[1, 2]]}, "'matrix' is not 3x3"),
        ({"seq": "100"}, "'seq' is str"),
        ({"window": {"kind": "count"}}, "window has no 'end'"),
        ({"metrics": {}}, "metrics has no 'accuracy'"),
    ],
)
def test_documents_of_another_version_or_shape_are_refused(
    change: dict[str, Any], message: str
) -> None:
    doc = {**next(window_docs("m", 1)), **change}
    with pytest.raises(DocumentError, match=message):
        check_window_doc(doc, "f:1")


def test_alert_documents_are_recognised_and_read() -> None:
    fired = alert_doc("m", 700)
    resolved = alert_doc("m", 900, state="resolved", source="detector", name="ADWIN")
    window = next(window_docs("m", 1))
    assert is_alert_doc(fired) and not is_alert_doc(window)
    a, b = parse_alert(fired, "x"), parse_alert(resolved, "y")
    assert (a.state, a.source, a.name, a.metric, a.seq) == (
        "fired",
        "rule",
        "accuracy < 0.8",
        "accuracy",
        700,
    )
    assert (b.state, b.source, b.name) == ("resolved", "detector", "ADWIN")
    assert a.x("time") == parse_time_ms(fired["window"]["end"]) and a.x("seq") == 700


def _frame(**kwargs: Any) -> Any:
    collection = Collection()
    for doc in window_docs("m", 30, **kwargs):
        collection.add_window(doc)
    return collection.frames()[0]


def test_optional_charts_only_where_their_fields_exist() -> None:
    base = ["matrix", "recall-matrix", "metrics", "recall", "precision"]
    assert [c.key for c in model_charts(_frame(), "time", [])] == base
    binary = [c.key for c in model_charts(_frame(classes=2, scores=True), "seq", [])]
    assert binary == [*base, "scores", "reliability", "roc", "pr"]
    wide = [
        c.key for c in model_charts(_frame(classes=20, scores=True, labels_join=True), "time", [])
    ]
    assert wide == [*base, "scores", "reliability", "class-auc", "coverage", "latency"]


def test_alerts_are_drawn_on_every_time_chart_of_their_model() -> None:
    alert = parse_alert(alert_doc("m", 1500), "x")
    charts = {c.key: c for c in model_charts(_frame(), "seq", [alert])}
    for key in ("metrics", "recall", "precision"):
        assert charts[key].datasets["alerts"][0]["x"] == 1500
    assert "alerts" not in charts["matrix"].datasets


def test_heatmap_recall_view_divides_each_row_by_its_total() -> None:
    doc = next(window_docs("m", 1, classes=4, seed=3))
    matrix = np.array(doc["matrix"])
    rows = heatmap_chart(doc, normalized=True).datasets["main"]
    assert len(rows) == 16
    for row in rows:
        i, j = doc["labels"].index(row["t"]), doc["labels"].index(row["p"])
        assert row["n"] == matrix[i, j]
        assert row["r"] == pytest.approx(matrix[i, j] / matrix[i].sum(), abs=1e-4)
