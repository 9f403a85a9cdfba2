"""The weighted ensemble: weighted arg-max, bare labels score 1, absent members abstain."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.parsing.batches import ParsedBatch, RawBatch, parse_batch
from flows.parsing.ensemble import Ensemble
from tests.reference import ensemble_vote, parse_line
from tests.streams import ENSEMBLE_WEIGHTS, dumps, good_records

WEIGHTS = {"m1": 0.5, "m2": 0.3, "m3": 0.2}


def vote(*entries: tuple[str, str, dict[str, float] | None]) -> str | None:
    return Ensemble(WEIGHTS).predict(entries)


def test_weighted_arg_max_of_scores() -> None:
    # A: 0.5*0.6 + 0.3*0.1 = 0.33 ; B: 0.5*0.4 + 0.3*0.9 = 0.47
    assert vote(("m1", "A", {"A": 0.6, "B": 0.4}), ("m2", "B", {"A": 0.1, "B": 0.9})) == "B"


def test_a_bare_label_scores_one_for_that_label() -> None:
    # A: 0.5*0.9 = 0.45 ; B: 0.5*0.1 + 0.3*1 = 0.35 ; then m3 adds 0.2 to B: 0.55
    assert vote(("m1", "A", {"A": 0.9, "B": 0.1}), ("m2", "B", None)) == "A"
    assert vote(("m1", "A", {"A": 0.9, "B": 0.1}), ("m2", "B", None), ("m3", "B", None)) == "B"


def test_members_missing_or_not_members_do_not_vote() -> None:
    assert vote(("other", "Z", None)) is None
    assert vote() is None
    assert vote(("other", "Z", {"Z": 100.0}), ("m3", "A", None)) == "A"


def test_ties_go_to_the_label_that_sorts_first() -> None:
    tie = Ensemble({"x": 0.5, "y": 0.5})
    assert tie.predict([("x", "b", None), ("y", "a", None)]) == "a"
    assert tie.predict([("x", "B", {"B": 0.5, "a": 0.5})]) == "B"


def parsed_with_ensemble(
    *records: dict[str, Any], weights: dict[str, float] | None = None
) -> ParsedBatch:
    values = [dumps(r) for r in records]
    ensemble = Ensemble(weights or WEIGHTS, "ens")
    return parse_batch(RawBatch(values, [0] * len(values), "o", list(range(len(values)))), ensemble)


def ensemble_predictions(parsed: ParsedBatch) -> list[str]:
    cols = parsed.by_model.get("ens")
    if cols is None:
        return []
    labels = getattr(cols, "labels", None)
    values = cols.pred.tolist() if hasattr(cols.pred, "tolist") else list(cols.pred)
    return [labels[v] for v in values] if labels is not None else values


def test_ensemble_is_one_more_model_in_parsed_batches() -> None:
    parsed = parsed_with_ensemble(
        # A: 0.5 * 0.9 = 0.45 ; B: 0.5 * 0.1 + 0.3 * 1 = 0.35
        {"id": 1, "label": "A", "predictions": {"m1": {"A": 0.9, "B": 0.1}, "m2": "B"}},
        {"id": 2, "label": "A", "predictions": {"outsider": "B"}},  # no member: no vote
        {"id": 3, "label": "A", "predictions": {"m1": [], "m2": "B"}},  # refused m1 abstains
    )
    assert ensemble_predictions(parsed) == ["A", "B"]
    assert [d.model for d in parsed.dead] == ["m1"]


def test_a_model_named_like_the_ensemble_is_refused() -> None:
    parsed = parsed_with_ensemble({"id": 1, "label": "A", "predictions": {"ens": "B", "m1": "A"}})
    assert [d.model for d in parsed.dead] == ["ens"]
    assert "reserved for the ensemble" in parsed.dead[0].reason
    assert ensemble_predictions(parsed) == ["A"]


@given(seed=st.integers(0, 10_000))
def test_ensemble_agrees_with_the_reference_on_varied_records(seed: int) -> None:
    records = good_records(25, seed)
    parsed = parsed_with_ensemble(*records, weights=dict(ENSEMBLE_WEIGHTS))
    expected = []
    for i, r in enumerate(records):
        rec, _ = parse_line(i, dumps(r), ENSEMBLE_WEIGHTS, "ens")
        if rec is not None and "ens" in rec.predictions:
            expected.append(rec.predictions["ens"])
    assert ensemble_predictions(parsed) == expected


@pytest.mark.parametrize(
    "entries",
    [
        [("m1", "A", {"A": 0.25, "B": 0.75}), ("m2", "A", None), ("m3", "B", {"B": 1.0})],
        [("m2", "x", None), ("m3", "y", None)],
        [("m1", "q", {"q": 0.1, "r": 0.1, "s": 0.1})],
    ],
)
def test_reference_vote_and_job_vote_agree(
    entries: list[tuple[str, str, dict[str, float] | None]],
) -> None:
    assert Ensemble(WEIGHTS).predict(entries) == ensemble_vote(WEIGHTS, entries)


def test_break5_a_weighted_sum_that_is_nan_refuses_the_ensemble_entry_only() -> None:
    """inf + (-inf) made every comparison false and `min()` ran on an empty list."""
    weights = {"m1": 2.0, "m2": 2.0}
    parsed = parsed_with_ensemble(
        {
            "id": "x",
            "label": "A",
            "predictions": {"m1": {"A": 1e308, "B": 0}, "m2": {"A": -1e308, "B": 0}},
        },
        {"id": "y", "label": "A", "predictions": {"m1": {"A": 1.0, "B": 0}}},
        weights=weights,
    )
    assert ensemble_predictions(parsed) == ["A"]
    assert [(d.model, d.position) for d in parsed.dead] == [("ens", 0)]
    assert "not a number" in parsed.dead[0].reason
    assert (len(parsed.by_model["m1"]), len(parsed.by_model["m2"])) == (2, 1)
    assert parsed.records == 2
    overflow_one_way = Ensemble(weights).predict(
        [("m1", "A", {"A": 1e308, "B": 0}), ("m2", "B", {"A": 1e308, "B": 0})]
    )
    assert overflow_one_way == "A"  # +inf is still an arg-max
