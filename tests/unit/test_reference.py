"""The oracle itself: it must be right, and `compare` must notice what is wrong."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reference import (
    ANY_TIME,
    Doc,
    Refused,
    compare,
    diff_values,
    epoch_ms_of_rfc3339,
    expected_run,
    parse_line,
    time_text,
    window_metrics,
)
from tests.streams import BAD_LINES, BadLine, dumps

T0 = 1_795_341_600_000  # 2026-11-22T10:00:00.000Z


@given(
    pairs=st.lists(
        st.tuples(st.sampled_from("abcdeΩ"), st.sampled_from("abcdeΩ")), min_size=1, max_size=60
    )
)
def test_exact_engine_equals_scikit_learn(pairs: list[tuple[str, str]]) -> None:
    truth = [t for t, _ in pairs]
    pred = [p for _, p in pairs]
    diffs: list[str] = []
    diff_values("metrics", window_metrics(truth, pred, "exact"), window_metrics(truth, pred), diffs)
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("bad", BAD_LINES, ids=lambda b: b.kind)
def test_oracle_refuses_each_bad_line_with_the_right_scope(bad: BadLine) -> None:
    record, refused = parse_line(0, bad.raw)
    assert [(r.scope, r.model) for r in refused] == [(bad.scope, bad.model)]
    if bad.scope == "record":
        assert record is None
    else:
        assert record is not None
        assert sorted(record.predictions) == sorted(bad.counted)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T10:00:00.250Z", T0 + 250),
        ("2026-11-22T15:30:00.250+05:30", T0 + 250),
        ("2026-11-22T02:00:00.250-08:00", T0 + 250),
        ("2026-11-22T10:00:00Z", T0),
        ("2026-11-22T10:00:00.999999999Z", T0 + 999),
        ("2026-11-22t10:00:00.5z", T0 + 500),
        ("2026-11-22 10:00:00+00:00", T0),
        ("1969-12-31T23:59:59.999Z", -1),
    ],
)
def test_rfc3339_parsing(text: str, expected: int) -> None:
    assert epoch_ms_of_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T10:00:00",
        "2026-11-22",
        "2026-11-22T10:00Z",
        "2026-13-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-11-22T10:00:00+24:00",
    ],
)
def test_rfc3339_refusals(text: str) -> None:
    with pytest.raises(Refused):
        epoch_ms_of_rfc3339(text)


def test_time_text() -> None:
    assert time_text(T0 + 250) == "2026-11-22T10:00:00.250Z"
    assert time_text(-1) == "1969-12-31T23:59:59.999Z"
    assert time_text(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"
    assert time_text(None) is ANY_TIME


def test_expected_run_by_hand() -> None:
    """Three records, window 2, a document every 2 records and a final one at the end."""
    lines = [
        dumps({"id": "r1", "ts": T0, "label": "b", "predictions": {"m": "b"}}),
        dumps({"id": 2, "label": "a", "predictions": {"m": {"a": 0.5, "b": 0.5}}}),
        b"   ",
        dumps(
            {"id": "r3", "ts": "2026-11-22T10:00:01.000Z", "label": 7, "predictions": {"m": "b"}}
        ),
    ]
    run = expected_run(lines, window_size=2, emit_every=2, fallback_ts=[0, T0 + 500, 0, 0])
    assert sorted(run.documents) == [("m", 2), ("m", 3)]
    second, final = run.documents[("m", 2)], run.documents[("m", 3)]
    assert second["window"] == {
        "kind": "count",
        "size": 2,
        "count": 2,
        "full": True,
        "first_id": "r1",
        "last_id": 2,
        "start": "2026-11-22T10:00:00.000Z",
        "end": "2026-11-22T10:00:00.500Z",
    }
    assert second["labels"] == ["a", "b"]
    assert second["matrix"] == [[1, 0], [0, 1]]  # the a/b tie goes to "a"
    assert final["labels"] == ["7", "a", "b"]
    assert final["matrix"] == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]  # r1 has left the window
    assert final["metrics"]["accuracy"] == 0.5
    assert final["window"]["first_id"] == 2
    assert run.records == 3
    assert run.rejections == []


def _doc() -> Doc:
    run = expected_run(
        [dumps({"id": 1, "ts": T0, "label": "a", "predictions": {"m": "a", "n": "b"}})],
        window_size=3,
        emit_every=1,
    )
    return run.documents[("m", 1)]


def _with(doc: Doc, path: list[Any], value: Any) -> Doc:
    changed = copy.deepcopy(doc)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def test_compare_accepts_an_equal_document_and_ignores_emitted_at() -> None:
    doc = _doc()
    actual = {**doc, "emitted_at": "2030-01-01T00:00:00.000Z"}
    assert compare([actual], {("m", 1): doc}) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["metrics", "accuracy"], 1.0 - 1e-6, "metrics.accuracy"),
        (["metrics", "per_class", "a", "precision"], math.nan, "precision"),
        (["metrics", "mcc"], 0.0, "mcc"),
        (["matrix"], [[2]], "matrix"),
        (["labels"], ["A"], "labels"),
        (["window", "full"], 0, "window.full"),
        (["window", "first_id"], "1", "window.first_id"),
        (["window", "start"], "2026-11-22T10:00:00Z", "window.start"),
        (["metrics", "per_class", "a", "tp"], 1.0, "per_class.a.tp"),
    ],
)
def test_compare_reports_each_difference(path: list[Any], value: Any, message: str) -> None:
    doc = _doc()
    actual = {**_with(doc, path, value), "emitted_at": "2030-01-01T00:00:00.000Z"}
    diffs = compare([actual], {("m", 1): doc})
    assert len(diffs) == 1 and message in diffs[0], diffs


def test_compare_reports_missing_unexpected_and_duplicate_documents() -> None:
    doc = _doc()
    other = {**doc, "seq": 2}
    diffs = compare([doc, doc, other], {("m", 1): doc, ("m", 5): doc})
    assert any("duplicate" in d for d in diffs)
    assert any("missing" in d and "('m', 5)" in d for d in diffs)
    assert any("unexpected" in d and "('m', 2)" in d for d in diffs)
    assert compare([doc, other], {("m", 1): doc}, subset=True) == []


def test_compare_accepts_any_time_only_for_unknown_times() -> None:
    doc = _with(_doc(), ["window", "start"], ANY_TIME)
    ok = _with(doc, ["window", "start"], "2031-01-01T00:00:00.123Z")
    bad = _with(doc, ["window", "start"], "yesterday")
    assert compare([ok], {("m", 1): doc}) == []
    assert compare([bad], {("m", 1): doc}) != []
