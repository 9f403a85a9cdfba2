"""The column ensemble (`flows.parsing.ensemble_columns`) gives what the record-by-record vote gives.

Each batch is parsed twice: as the job does (the column ensemble where the batch is regular) and
with every record judged one by one by `parse_record` and `Ensemble.vote` (the reference). The
predictions, the ensemble's scores (bit for bit), every other model's columns and the dead
letters must be the same.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.parsing import batches
from flows.parsing.batches import ParsedBatch, RawBatch, parse_batch
from flows.parsing.ensemble import Ensemble
from tests.streams import dumps, good_records


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def _rows(parsed: ParsedBatch) -> dict[str, list[tuple[Any, ...]]]:
    """Per model, each record as plain values (scores as exact bits, NaN-free)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model, cols in parsed.by_model.items():
        rows = []
        for i in range(len(cols)):
            scores: dict[str, bytes] = {}
            if cols.scores is not None:
                for key, value in zip(cols.score_keys, cols.scores[i].tolist(), strict=True):
                    if not math.isnan(value):
                        scores[key] = _bits(value)
            rows.append(
                (
                    cols.labels[int(cols.truth[i])],
                    cols.labels[int(cols.pred[i])],
                    cols.ids[i],
                    int(cols.ts[i]),
                    None if cols.positions is None else int(cols.positions[i]),
                    scores,
                )
            )
        out[model] = rows
    return out


def _both(values: list[bytes], ensemble: Ensemble) -> tuple[ParsedBatch, ParsedBatch, bool]:
    batch = RawBatch(values, [0] * len(values), "o", list(range(len(values))))
    calls: list[object] = []
    real = batches._ensemble_columns

    def spy(*args: Any) -> Any:
        result = real(*args)
        calls.append(result)
        return result

    batches._ensemble_columns = spy  # type: ignore[assignment]
    try:
        fast = parse_batch(batch, ensemble)
        batches._ensemble_columns = lambda *args: True  # type: ignore[assignment]
        slow = parse_batch(batch, ensemble)
    finally:
        batches._ensemble_columns = real  # type: ignore[assignment]
    took_columns = bool(calls) and calls[0] is not True
    return fast, slow, took_columns


def _same(values: list[bytes], ensemble: Ensemble) -> bool:
    fast, slow, took = _both(values, ensemble)
    assert _rows(fast) == _rows(slow)
    assert [(d.reason, d.position, d.model) for d in fast.dead] == [
        (d.reason, d.position, d.model) for d in slow.dead
    ]
    assert (fast.records, fast.rejected_records, fast.rejected_entries) == (
        slow.records,
        slow.rejected_records,
        slow.rejected_entries,
    )
    return took


_SCORE = st.one_of(
    st.floats(0, 1),
    st.sampled_from([0.0, -0.0, 0.5, 0.25, 1.0, 1e308, -1e308, 1e-320]),
    st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
    st.integers(-3, 3),
)


@st.composite
def _batch(draw: st.DrawFn) -> tuple[list[bytes], dict[str, float]]:
    labels = draw(st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=4, unique=True))
    keys1 = draw(st.permutations(labels))
    keys2 = draw(st.permutations(labels))[: draw(st.integers(1, len(labels)))]
    models = draw(st.permutations(["m1", "m2", "m3", "other"]))
    n = draw(st.integers(1, 12))
    records = []
    for i in range(n):
        entries: dict[str, Any] = {
            "m1": {k: draw(_SCORE) for k in keys1},
            "m2": {k: draw(_SCORE) for k in keys2},
            "m3": draw(st.sampled_from("ABCDEF")),
            "other": draw(st.sampled_from("AB")),
        }
        records.append(
            {
                "id": f"r{i}",
                "ts": 1_795_341_600_000 + i,
                "label": draw(st.sampled_from("ABCDEF")),
                "predictions": {m: entries[m] for m in models},
            }
        )
    weights = draw(
        st.dictionaries(
            st.sampled_from(["m1", "m2", "m3", "absent"]),
            st.sampled_from([0.0, 0.5, 0.3, 0.2, 1.0, 2.0, 1e300]),
            min_size=1,
        )
    )
    if not any(w > 0 for w in weights.values()):
        weights["m1"] = 1.0
    return [dumps(r) for r in records], weights


@settings(max_examples=400, deadline=None)
@given(_batch())
def test_regular_batches_agree_with_the_vote_bit_for_bit(
    case: tuple[list[bytes], dict[str, float]],
) -> None:
    values, weights = case
    TOOK.append(_same(values, Ensemble(weights, "ens")))


TOOK: list[bool] = []


def test_most_generated_batches_took_the_column_ensemble() -> None:
    """Runs after the property test above (file order): it must not pass by falling back."""
    assert TOOK and sum(TOOK) >= 0.8 * len(TOOK), (sum(TOOK), len(TOOK))


def test_the_sample_shape_takes_the_column_ensemble() -> None:
    from flows.demo import sample_lines

    lines = sample_lines()[:1000]
    ensemble = Ensemble({"model1": 0.5, "model2": 0.3, "model3": 0.2}, "ensemble")
    assert _same(lines, ensemble)
    fast, _, _ = _both(lines, ensemble)
    assert len(fast.by_model["ensemble"]) == 1000


def test_an_overflowing_sum_is_judged_one_by_one() -> None:
    weights = {"m1": 2.0, "m2": 2.0}
    records = [
        {
            "id": "x",
            "label": "A",
            "predictions": {"m1": {"A": 1e308, "B": 0}, "m2": {"A": -1e308, "B": 0}},
        },
        {
            "id": "y",
            "label": "A",
            "predictions": {"m1": {"A": 1.0, "B": 0}, "m2": {"A": 0.5, "B": 0}},
        },
    ]
    values = [dumps(r) for r in records]
    assert _same(values, Ensemble(weights, "ens"))
    fast, _, _ = _both(values, Ensemble(weights, "ens"))
    assert [d.model for d in fast.dead] == ["ens"]


@pytest.mark.parametrize("seed", range(20))
def test_varied_streams_agree(seed: int) -> None:
    values = [dumps(r) for r in good_records(60, seed)]
    weights = {"model_a": 0.5, "model_b": 0.25, "modèle_ü": 0.25, "m1": 1.0}
    _same(values, Ensemble(weights, "ens"))
    _same(values[:1], Ensemble(weights, "ens"))


def test_reserved_name_and_no_member() -> None:
    records = [
        {"id": 1, "label": "A", "predictions": {"m1": "A", "ens": "B"}},
        {"id": 2, "label": "A", "predictions": {"m1": "B", "ens": "B"}},
    ]
    _same([dumps(r) for r in records], Ensemble({"m1": 1.0}, "ens"))
    records = [{"id": i, "label": "A", "predictions": {"x": "A"}} for i in range(3)]
    assert _same([dumps(r) for r in records], Ensemble({"m1": 1.0}, "ens"))
    fast, _, _ = _both([dumps(r) for r in records], Ensemble({"m1": 1.0}, "ens"))
    assert "ens" not in fast.by_model
    assert np.all(fast.by_model["x"].pred >= 0)
