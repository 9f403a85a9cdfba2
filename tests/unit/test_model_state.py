"""One model's state in the dataflow: emission at exact multiples, the final document, resume."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.errors import SnapshotError
from flows.parsing.batches import RawBatch, parse_batch
from flows.windows.count import CountPolicy
from flows.windows.model_state import ModelWindowLogic
from tests.reference import assert_documents_match, expected_run
from tests.streams import dumps

T0 = 1_795_341_600_000
LABELS = ["a", "b", "c", "Ω"]


def lines_of(pairs: list[tuple[str, str]], other_every: int) -> list[bytes]:
    """Records for model ``m``; every ``other_every``-th also (or only) has model ``n``."""
    lines = []
    for i, (t, p) in enumerate(pairs):
        predictions: dict[str, Any] = {"m": p}
        if other_every and i % other_every == 0:
            predictions = {"n": t} if i % (2 * other_every) else {"m": p, "n": t}
        lines.append(dumps({"id": i, "ts": T0 + i, "label": t, "predictions": predictions}))
    return lines


def run_logic(
    lines: list[bytes], window: int, emit: int, cuts: list[int], resume_after: int | None
) -> list[dict[str, Any]]:
    """Feed model ``m``'s columns batch by batch, optionally through a pickled snapshot."""
    policy = CountPolicy(window)
    logic = ModelWindowLogic(policy, emit, None, clock=lambda: T0)
    docs: list[dict[str, Any]] = []
    start, turn = 0, 0
    while start < len(lines):
        stop = min(len(lines), start + cuts[turn % len(cuts)])
        parsed = parse_batch(
            RawBatch(lines[start:stop], [0] * (stop - start), "o", list(range(start, stop)))
        )
        if "m" in parsed.by_model:
            out, discard = logic.on_batch([parsed.by_model["m"]])
            # Bytewax drops a key's state when the logic says DISCARD (True): the window and
            # its emission count must outlive every batch.
            assert discard is ModelWindowLogic.RETAIN
            docs.extend(out)
        if resume_after is not None and turn == resume_after:
            state = pickle.loads(pickle.dumps(logic.snapshot()))
            logic = ModelWindowLogic(policy, emit, state, clock=lambda: T0)
        start, turn = stop, turn + 1
    final, discard = logic.on_eof()
    assert discard is ModelWindowLogic.RETAIN  # a resumed run may read on after an EOF
    docs.extend(final)
    return docs


@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(LABELS), st.sampled_from(LABELS)), min_size=1, max_size=60
    ),
    window=st.integers(1, 12),
    emit=st.integers(1, 10),
    cuts=st.lists(st.integers(1, 15), min_size=1, max_size=4),
    other_every=st.integers(0, 4),
    resume_after=st.none() | st.integers(0, 8),
)
def test_documents_at_every_multiple_and_at_the_end(
    pairs: list[tuple[str, str]],
    window: int,
    emit: int,
    cuts: list[int],
    other_every: int,
    resume_after: int | None,
) -> None:
    lines = lines_of(pairs, other_every)
    expected = expected_run(lines, window_size=window, emit_every=emit, engine="exact")
    mine = {key: doc for key, doc in expected.documents.items() if key[0] == "m"}
    docs = run_logic(lines, window, emit, cuts, resume_after)
    assert [d["seq"] for d in docs] == sorted(seq for _, seq in mine)
    assert_documents_match(docs, mine)


def test_no_second_final_document_after_resuming_at_an_emission() -> None:
    lines = lines_of([("a", "a")] * 6, 0)
    docs = run_logic(lines, window=4, emit=3, cuts=[3], resume_after=1)
    assert [d["seq"] for d in docs] == [3, 6]


def test_an_unknown_state_version_is_refused() -> None:
    policy = CountPolicy(3)
    logic = ModelWindowLogic(policy, 1, None)
    parsed = parse_batch(RawBatch(lines_of([("a", "b")], 0), [0], "o", [0]))
    logic.on_batch([parsed.by_model["m"]])
    with pytest.raises(SnapshotError):
        ModelWindowLogic(policy, 1, {**logic.snapshot(), "v": 999})  # type: ignore[typeddict-item]
