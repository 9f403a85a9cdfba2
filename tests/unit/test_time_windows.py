"""Time windows: the matrix equals a recount of the records the window should hold."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.errors import SnapshotError
from flows.settings import parse_duration_ms
from flows.windows.count import CountWindow
from flows.windows.time import TimeWindow
from tests.batches import model_batch

Record = tuple[str, str, int]  # truth, prediction, event time (ms)


def held_by_definition(
    records: list[Record], batches: list[int], duration: int
) -> list[tuple[int, Record]]:
    """(record number, record) held after each batch boundary in ``batches``.

    A record outside the window when it is read (against the newest time up to and including
    it) is never held; held records leave in read order, from the front, once their time is at
    or before the cutoff. Record by record, so the batches cannot change the verdict.
    """
    held: list[tuple[int, Record]] = []
    newest: int | None = None
    for number, r in enumerate(records[: batches[-1]] if batches else []):
        newest = r[2] if newest is None else max(newest, r[2])
        if r[2] > newest - duration:
            held.append((number, r))
        while held and held[0][1][2] <= newest - duration:
            held.pop(0)
    return held


def feed(window: TimeWindow, records: list[Record], start: int) -> None:
    window.add(
        model_batch(
            [t for t, _, _ in records],
            [p for _, p, _ in records],
            list(range(start, start + len(records))),
            [ts for _, _, ts in records],
        )
    )


batches = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from("abcde"), st.sampled_from("abcdef"), st.integers(0, 40), st.booleans()
        ),
        min_size=1,
        max_size=30,
    ),
    min_size=1,
    max_size=8,
)


@given(duration=st.integers(1, 300), batches=batches, restore_at=st.integers(0, 8))
def test_matrix_is_a_recount_of_the_held_records(
    duration: int, batches: list[list[tuple[str, str, int, bool]]], restore_at: int
) -> None:
    window = TimeWindow(duration)
    records: list[Record] = []
    ends: list[int] = []
    clock = 0
    for i, batch in enumerate(batches):
        chunk: list[Record] = []
        for truth, pred, step, late in batch:
            clock += step
            chunk.append((truth, pred, clock - (duration + 5 if late else 0)))
        feed(window, chunk, len(records))
        records += chunk
        ends.append(len(records))
        if i == restore_at:
            window = TimeWindow.restore(pickle.loads(pickle.dumps(window.snapshot())))
        held = held_by_definition(records, ends, duration)
        view = window.view()
        expected = np.zeros((len(view.labels),) * 2, dtype=np.int64)
        for _, (truth, pred, _) in held:
            expected[view.labels.index(truth), view.labels.index(pred)] += 1
        assert view.count == len(held)
        assert view.seq == len(records)
        assert (view.matrix == expected).all()
        assert view.kind == "time" and view.size == duration
        if held:
            assert view.first == (held[0][0], held[0][1][2])
        assert view.last == (len(records) - 1, records[-1][2])


def test_a_late_record_counts_in_seq_but_never_in_the_matrix() -> None:
    window = TimeWindow(1000)
    feed(window, [("a", "a", 10_000), ("a", "b", 10_500)], 0)
    feed(window, [("b", "b", 2_000)], 2)  # far older than the window's start
    view = window.view()
    assert view.seq == 3
    assert view.count == 2
    assert int(view.matrix.sum()) == 2


def test_full_once_the_stream_covers_the_duration() -> None:
    window = TimeWindow(1000)
    feed(window, [("a", "a", 0), ("a", "a", 999)], 0)
    assert not window.view().full
    feed(window, [("a", "a", 1000)], 2)
    assert window.view().full


def test_a_count_checkpoint_is_not_read_as_a_time_window() -> None:
    count = CountWindow(10)
    count.add(model_batch(["a"], ["a"], [1], [0]))
    with pytest.raises(SnapshotError, match="CONFUSION_WINDOW_KIND"):
        TimeWindow.restore(count.snapshot())
    with pytest.raises(SnapshotError, match="CONFUSION_WINDOW_KIND"):
        CountWindow.restore(TimeWindow(5).snapshot())


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("90s", 90_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("2.5", 2_500),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "abc", "0s", "-5m", "nanh", "5 minutes"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(text)


def test_break8_lateness_is_judged_when_the_record_is_read_not_at_the_batch_end() -> None:
    """A record 298 s behind in a 300 s window was dropped when a later record of the same
    batch moved the window on; read one by one it was held. Both must now agree."""
    m = 1000
    records = [
        ("a", "a", 1000 * m),
        ("b", "b", 702 * m),
        ("c", "c", 1003 * m),
        ("d", "d", 1010 * m),
    ]
    views = []
    for cuts in ([1, 2, 3, 4], [4], [2, 4]):
        window = TimeWindow(300 * m)
        start = 0
        for end in cuts:
            feed(window, records[start:end], start)
            start = end
        view = window.view()
        views.append((view.count, int(view.matrix.sum()), view.first[0]))  # ids: record numbers
    assert views == [(4, 4, 0)] * 3  # b stays until a (read before it) leaves
