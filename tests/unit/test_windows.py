"""Count windows: always a recount of the last N records, exact add/remove, faithful snapshots."""

from __future__ import annotations

import pickle
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.errors import SnapshotError
from flows.windows.base import WindowView
from flows.windows.count import CountWindow
from flows.windows.pairs import pair_counts
from tests.batches import model_batch

LABELS = ["a", "b", "c", "Ω", "7", "10", "zz"]
T0 = 1_795_341_600_000


@dataclass(frozen=True, slots=True)
class Rec:
    id: str | int
    ts: int
    truth: str
    pred: str


def make_records(pairs: Sequence[tuple[str, str]], start: int = 0) -> list[Rec]:
    return [
        Rec(i if i % 3 else f"r-{i}", T0 + 7 * i - (i % 4) * 1000, t, p)
        for i, (t, p) in enumerate(pairs, start)
    ]


def batches(records: Sequence[Rec], sizes: Sequence[int]) -> Iterator[list[Rec]]:
    """``records`` cut into consecutive batches whose sizes cycle through ``sizes``."""
    pos, turn = 0, 0
    while pos < len(records):
        size = sizes[turn % len(sizes)]
        yield list(records[pos : pos + size])
        pos, turn = pos + size, turn + 1


def feed(window: CountWindow, batch: Sequence[Rec]) -> None:
    window.add(
        model_batch(
            [r.truth for r in batch],
            [r.pred for r in batch],
            [r.id for r in batch],
            [r.ts for r in batch],
        )
    )


def view_pairs(view: WindowView) -> Counter[tuple[str, str]]:
    """The view's matrix as counts by (truth label, predicted label), zeros left out."""
    assert view.matrix.shape == (len(view.labels), len(view.labels))
    assert (view.matrix >= 0).all()
    counts: Counter[tuple[str, str]] = Counter()
    for i, t in enumerate(view.labels):
        for j, p in enumerate(view.labels):
            if view.matrix[i, j]:
                counts[(t, p)] = int(view.matrix[i, j])
    return counts


def assert_view_is_recount(
    view: WindowView, held: Sequence[Rec], seq: int, size: int, labels_seen: set[str]
) -> None:
    """The view equals a recount of ``held``, the records the window must hold."""
    assert view.size == size
    assert view.seq == seq
    assert view.count == len(held)
    assert sorted(view.labels) == sorted(labels_seen)
    assert len(set(view.labels)) == len(view.labels), "a label has two codes"
    assert view_pairs(view) == Counter((r.truth, r.pred) for r in held)
    assert view.first == (held[0].id, held[0].ts)
    assert view.last == (held[-1].id, held[-1].ts)


pairs_strategy = st.lists(
    st.tuples(st.sampled_from(LABELS), st.sampled_from(LABELS)), min_size=1, max_size=150
)
# Mostly small windows and batches, so that windows fill and evict often, in every way: one record
# at a time, a few, or a batch that alone overflows the window.
window_sizes = st.one_of(st.integers(1, 6), st.integers(1, 40))
sizes_strategy = st.lists(st.one_of(st.integers(1, 3), st.integers(1, 45)), min_size=1, max_size=6)


@given(pairs=pairs_strategy, size=window_sizes, sizes=sizes_strategy)
def test_window_equals_recount_of_last_n_records(
    pairs: list[tuple[str, str]], size: int, sizes: list[int]
) -> None:
    records = make_records(pairs)
    window = CountWindow(size)
    seen: list[Rec] = []
    for batch in batches(records, sizes):
        feed(window, batch)
        seen.extend(batch)
        assert_view_is_recount(
            window.view(),
            seen[-size:],
            len(seen),
            size,
            {label for r in seen for label in (r.truth, r.pred)},
        )


def test_every_small_window_and_batch_size_combination() -> None:
    """Exhaustive over the boundaries random search can miss: a batch evicting exactly one
    record, exactly the whole window, or more than the window holds."""
    rng = random.Random(3)
    records = make_records([(rng.choice(LABELS), rng.choice(LABELS)) for _ in range(45)])
    for size in range(1, 13):
        for batch_size in range(1, 15):
            for sizes in ([batch_size], [batch_size, 1], [1, batch_size, 2]):
                window = CountWindow(size)
                seen: list[Rec] = []
                for batch in batches(records, sizes):
                    feed(window, batch)
                    seen.extend(batch)
                    assert_view_is_recount(
                        window.view(),
                        seen[-size:],
                        len(seen),
                        size,
                        {label for r in seen for label in (r.truth, r.pred)},
                    )


@given(k=st.integers(1, 9), data=st.data())
def test_pair_counts_is_a_count_of_each_truth_prediction_pair(k: int, data: st.DataObject) -> None:
    """The one kernel windows add and evict with: rows are truth, columns prediction."""
    truth = data.draw(st.lists(st.integers(0, k - 1), max_size=60))
    pred = data.draw(st.lists(st.integers(0, k - 1), min_size=len(truth), max_size=len(truth)))
    codes = np.asarray([t * k + p for t, p in zip(truth, pred, strict=True)], dtype=np.uint8)
    matrix = pair_counts(codes, k)
    expected = Counter(zip(truth, pred, strict=True))
    assert matrix.shape == (k, k)
    assert {(i, j): int(matrix[i, j]) for i in range(k) for j in range(k) if matrix[i, j]} == dict(
        expected
    )


def _restored(window: CountWindow, size: int | None = None) -> CountWindow:
    """A window rebuilt from a pickled snapshot, as recovery does."""
    return CountWindow.restore(pickle.loads(pickle.dumps(window.snapshot())), size)


@given(pairs=pairs_strategy, size=window_sizes, sizes=sizes_strategy, cut=st.integers(0, 150))
def test_snapshot_pickle_restore_then_keeps_working_identically(
    pairs: list[tuple[str, str]], size: int, sizes: list[int], cut: int
) -> None:
    records = make_records(pairs)
    cut = min(cut, len(records) - 1)
    head, tail = records[: cut + 1], records[cut + 1 :]
    window = CountWindow(size)
    for batch in batches(head, sizes):
        feed(window, batch)
    state = pickle.dumps(window.snapshot())
    # The snapshot is a copy: what the live window does next does not leak into it.
    for batch in batches(tail, sizes):
        feed(window, batch)
    restored = CountWindow.restore(pickle.loads(state))
    seen = list(head)
    labels = {label for r in seen for label in (r.truth, r.pred)}
    assert_view_is_recount(restored.view(), seen[-size:], len(seen), size, labels)
    for batch in batches(tail, sizes[::-1]):
        feed(restored, batch)
        seen.extend(batch)
        labels |= {label for r in batch for label in (r.truth, r.pred)}
        assert_view_is_recount(restored.view(), seen[-size:], len(seen), size, labels)
    original, again = window.view(), restored.view()
    assert (again.seq, again.count, again.first, again.last) == (
        original.seq,
        original.count,
        original.first,
        original.last,
    )
    assert view_pairs(again) == view_pairs(original)


@given(
    pairs=pairs_strategy,
    old_size=window_sizes,
    new_size=window_sizes,
    sizes=sizes_strategy,
    cut=st.integers(1, 150),
)
def test_restore_with_another_size_keeps_the_newest_records(
    pairs: list[tuple[str, str]], old_size: int, new_size: int, sizes: list[int], cut: int
) -> None:
    records = make_records(pairs)
    cut = min(cut, len(records))
    head, tail = records[:cut], records[cut:]
    window = CountWindow(old_size)
    for batch in batches(head, sizes):
        feed(window, batch)
    restored = _restored(window, new_size)
    held = head[-min(old_size, new_size) :]
    labels = {label for r in head for label in (r.truth, r.pred)}
    assert_view_is_recount(restored.view(), held, len(head), new_size, labels)
    seq = len(head)
    for batch in batches(tail, sizes):
        feed(restored, batch)
        seq += len(batch)
        held = (held + batch)[-new_size:]
        labels |= {label for r in batch for label in (r.truth, r.pred)}
        assert_view_is_recount(restored.view(), held, seq, new_size, labels)


def test_restore_at_every_cut_around_record_log_chunk_boundaries() -> None:
    """Ids and times live in chunks of 16+ records: resume at every position around them."""
    rng = random.Random(5)
    records = make_records([(rng.choice(LABELS), rng.choice(LABELS)) for _ in range(75)])
    for old_size in (1, 15, 16, 17, 33):
        window = CountWindow(old_size)
        for cut in range(1, 70):
            feed(window, records[cut - 1 : cut])
            for new_size in (1, 16, 17, 40):
                restored = _restored(window, new_size)
                held = records[:cut][-min(old_size, new_size) :]
                feed(restored, records[cut : cut + 3])
                held = (held + records[cut : cut + 3])[-new_size:]
                view = restored.view()
                assert (view.count, view.first, view.last) == (
                    len(held),
                    (held[0].id, held[0].ts),
                    (held[-1].id, held[-1].ts),
                ), (old_size, cut, new_size)


def test_more_than_256_labels_past_one_byte_codes() -> None:
    """Codes widen from one byte to two while records are held: nothing is lost."""
    rng = random.Random(7)
    pairs = [
        (
            f"L{rng.randrange(8 if i < 200 else 300):03d}",
            f"L{rng.randrange(8 if i < 200 else 300):03d}",
        )
        for i in range(900)
    ]
    records = make_records(pairs)
    for size in (1, 50, 400):
        window = CountWindow(size)
        seen: list[Rec] = []
        for batch in batches(records, [1, 37, 5, 120]):
            feed(window, batch)
            seen.extend(batch)
            assert_view_is_recount(
                window.view(),
                seen[-size:],
                len(seen),
                size,
                {label for r in seen for label in (r.truth, r.pred)},
            )
        again = _restored(window)
        assert view_pairs(again.view()) == view_pairs(window.view())


def test_window_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window size"):
        CountWindow(0)


def test_snapshot_is_versioned_and_an_unknown_version_is_refused() -> None:
    window = CountWindow(3)
    feed(window, make_records([("a", "b")]))
    state: dict[str, Any] = window.snapshot()
    assert state["v"] == 1
    with pytest.raises(SnapshotError, match="version"):
        CountWindow.restore({**state, "v": 999})
