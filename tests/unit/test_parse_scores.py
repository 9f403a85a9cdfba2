"""The parser carries each model's score maps, whichever path a record takes."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.parsing.batches import RawBatch, parse_batch
from flows.parsing.ensemble import Ensemble

WEIGHTS = {"m1": 0.5, "m2": 2.0}


def batch(lines: list[bytes]) -> RawBatch:
    return RawBatch(lines, [0] * len(lines), "memory", list(range(1, len(lines) + 1)))


def expected_maps(
    lines: list[bytes], model: str, ensemble: bool
) -> dict[Any, dict[str, float] | None]:
    """Per record id: the model's valid score map, None for a bare label (by hand, from JSON)."""
    out: dict[Any, dict[str, float] | None] = {}
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        entries = rec.get("predictions") if isinstance(rec, dict) else None
        if not isinstance(entries, dict):
            continue
        if ensemble and model == "ensemble":
            totals: dict[str, float] = {}
            for name, weight in WEIGHTS.items():
                entry = entries.get(name)
                if isinstance(entry, str):
                    totals[entry] = totals.get(entry, 0.0) + weight
                elif isinstance(entry, dict) and _valid(entry):
                    for k, v in entry.items():
                        totals[k] = totals.get(k, 0.0) + weight * v
            whole = sum(totals.values())
            if totals:
                out[rec["id"]] = (
                    {k: v / whole for k, v in totals.items()} if 0 < whole < math.inf else None
                )
            continue
        entry = entries.get(model)
        if isinstance(entry, str):
            out[rec["id"]] = None
        elif isinstance(entry, dict) and _valid(entry):
            out[rec["id"]] = {k: float(v) for k, v in entry.items()}
    return out


def _valid(entry: dict[str, Any]) -> bool:
    return (
        bool(entry)
        and "" not in entry
        and all(type(v) in (int, float) and math.isfinite(v) for v in entry.values())
    )


entry_st = st.one_of(
    st.sampled_from(["A", "B", "C"]),
    st.dictionaries(
        st.sampled_from(["A", "B", "C"]),
        st.floats(-1, 2, allow_nan=False) | st.integers(0, 1),
        min_size=1,
    ),
    st.just({"A": "high"}),
    st.just({}),
)
record_st = st.fixed_dictionaries({"m1": entry_st, "m2": entry_st})


@settings(max_examples=150, deadline=None)
@given(st.lists(record_st, min_size=1, max_size=25), st.booleans(), st.booleans())
def test_scores_follow_their_records(
    preds: list[dict[str, Any]], with_ensemble: bool, broken: bool
) -> None:
    lines = [
        json.dumps({"id": i, "label": "A", "predictions": p}).encode() for i, p in enumerate(preds)
    ]
    if broken:
        lines.insert(len(lines) // 2, b'{"id": "x", "label": ')
    parsed = parse_batch(batch(lines), Ensemble(WEIGHTS) if with_ensemble else None)
    for model, cols in parsed.by_model.items():
        expected = expected_maps(lines, model, with_ensemble)
        assert list(expected) == cols.ids
        if all(m is None for m in expected.values()):
            assert cols.scores is None or np.isnan(cols.scores).all()
            continue
        assert cols.scores is not None and cols.scores.shape == (len(cols), len(cols.score_keys))
        for row, rid in enumerate(cols.ids):
            want = expected[rid]
            got = {
                k: float(v)
                for k, v in zip(cols.score_keys, cols.scores[row].tolist(), strict=True)
                if not math.isnan(v)
            }
            assert got == pytest.approx(want or {}, rel=1e-12, abs=0), (model, rid)
