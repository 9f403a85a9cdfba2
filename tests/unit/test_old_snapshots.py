"""Checkpoints written before the window API changed still restore, and the job goes on exactly.

`tests/data/model-state-v1-603f684.pickle` holds per-model states written by commit 603f684 (see
tests/data/README.md). Resumed here with today's code, the remaining records must give exactly
the reference documents of the whole stream.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from flows.parsing.batches import RawBatch, parse_batch
from flows.windows.base import WindowPolicy
from flows.windows.count import CountPolicy
from flows.windows.model_state import ModelWindowLogic
from flows.windows.time import TimePolicy
from tests.reference import assert_documents_match, expected_run
from tests.streams import time_skew_stream

SNAPSHOTS = Path(__file__).resolve().parents[1] / "data" / "model-state-v1-603f684.pickle"
CUT, WINDOW, DURATION_MS, EMIT = 150, 40, 2000, 7


@pytest.mark.parametrize(
    ("kind", "policy"), [("count", CountPolicy(WINDOW)), ("time", TimePolicy(DURATION_MS))]
)
@pytest.mark.parametrize("batch", [1, 13, 1000])
def test_a_v1_checkpoint_resumes_into_the_reference_documents(
    kind: str, policy: WindowPolicy[Any, Any], batch: int
) -> None:
    states = pickle.loads(SNAPSHOTS.read_bytes())[kind]
    s = time_skew_stream(skewed=False)
    logics = {model: ModelWindowLogic(policy, EMIT, state) for model, state in states.items()}
    docs: list[dict[str, Any]] = []
    for lo in range(CUT, len(s.lines), batch):
        hi = min(lo + batch, len(s.lines))
        parsed = parse_batch(
            RawBatch(s.lines[lo:hi], s.fallback_ts[lo:hi], "o", list(range(lo, hi)))
        )
        for model, cols in parsed.by_model.items():
            logic = logics.setdefault(model, ModelWindowLogic(policy, EMIT, None))
            docs.extend(logic.on_batch([cols])[0])
    for logic in logics.values():
        docs.extend(logic.on_eof()[0])
    reference = expected_run(
        s.lines,
        window_size=WINDOW,
        emit_every=EMIT,
        engine="exact",
        window_duration_ms=DURATION_MS if kind == "time" else None,
    )
    resumed_at = {model: state["window"]["seq"] for model, state in states.items()}
    after = {
        key: doc for key, doc in reference.documents.items() if key[1] > resumed_at.get(key[0], 0)
    }
    assert len(after) > 40
    assert_documents_match(docs, after)
