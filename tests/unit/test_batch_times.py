"""The batch timestamp path (`flows.parsing.times.batch_ms`) agrees with `timestamp_ms` exactly.

Whatever it converts must equal the reference; whatever it is not sure of it hands back (None),
and `parse_batch` then asks the reference value by value, so verdicts and reasons never change.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.parsing.batches import _timestamps
from flows.parsing.checks import MAX_MS, MIN_MS, RFC3339_LINES, RecordError, timestamp_ms
from flows.parsing.times import batch_ms


def _reference(values: list[str]) -> list[int | str]:
    out: list[int | str] = []
    for value in values:
        try:
            out.append(timestamp_ms(value))
        except RecordError as exc:
            out.append(str(exc))
    return out


def _check(values: list[str]) -> None:
    assert RFC3339_LINES.fullmatch("\n".join(values)) is not None, values
    got = batch_ms(values, MIN_MS, MAX_MS)
    want = _reference(values)
    if got is not None:
        assert got.tolist() == want
    ts, bad = _timestamps(list(values), [0] * len(values))
    assert [str(w) if isinstance(w, str) else None for w in want] == [
        str(w) if b else None for w, b in zip(want, bad.tolist(), strict=True)
    ]
    assert [0 if b else t for t, b in zip(ts.tolist(), bad.tolist(), strict=True)] == [
        0 if isinstance(w, str) else w for w in want
    ]


EDGES = [
    "2026-11-22T10:00:00.250Z",
    "2026-11-22t10:00:00.250z",
    "2026-11-22 10:00:00.250Z",
    "2026-11-22T10:00:00Z",
    "2026-11-22T10:00:00.1Z",
    "2026-11-22T10:00:00.12Z",
    "2026-11-22T10:00:00.123456789Z",
    "2026-11-22T10:00:00.9999999Z",
    "2026-11-22T10:00:00+01:00",
    "2026-11-22T10:00:00-23:59",
    "2026-11-22T10:00:00.5-00:00",
    "2026-11-22T10:00:00+24:00",
    "2026-11-22T10:00:00+23:60",
    "2026-11-22T10:00:60Z",
    "2026-11-22T24:00:00Z",
    "2026-02-29T10:00:00Z",
    "2024-02-29T10:00:00Z",
    "2000-02-29T10:00:00Z",
    "1900-02-29T10:00:00Z",
    "2026-04-31T10:00:00Z",
    "2026-13-01T10:00:00Z",
    "2026-00-01T10:00:00Z",
    "2026-01-00T10:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59.999Z",
    "9999-12-31T23:59:59.999-01:00",
    "1969-12-31T23:59:59.999Z",
    "1969-12-31T23:59:59.9999Z",
    "1970-01-01T00:00:00.000+00:01",
]


def test_edges_one_at_a_time_and_as_batches_of_one_layout() -> None:
    for value in EDGES:
        _check([value])
    by_width: dict[int, list[str]] = {}
    for value in EDGES:
        by_width.setdefault(len(value), []).append(value)
    for values in by_width.values():
        _check(values)
    _check(EDGES)


def test_a_uniform_batch_takes_the_column_path() -> None:
    values = [f"2026-11-22T10:{m:02d}:{s:02d}.{s * 7:03d}Z" for m in range(60) for s in range(60)]
    got = batch_ms(values, MIN_MS, MAX_MS)
    assert got is not None and got.tolist() == _reference(values)
    offsets = [f"1999-12-31T23:59:59.99{k % 10}+{k % 24:02d}:{k % 60:02d}" for k in range(500)]
    got = batch_ms(offsets, MIN_MS, MAX_MS)
    assert got is not None and got.tolist() == _reference(offsets)


_DIGITS = st.integers(0, 9).map(str)


@st.composite
def _stamp(draw: st.DrawFn, layout: tuple[int, bool]) -> str:
    frac, zulu = layout
    year = draw(st.integers(0, 9999))
    parts = [
        f"{year:04d}-{draw(st.integers(0, 13)):02d}-{draw(st.integers(0, 32)):02d}",
        draw(st.sampled_from("Tt ")),
        f"{draw(st.integers(0, 24)):02d}:{draw(st.integers(0, 60)):02d}:"
        f"{draw(st.integers(0, 60)):02d}",
    ]
    if frac:
        parts.append("." + "".join(draw(st.lists(_DIGITS, min_size=frac, max_size=frac))))
    if zulu:
        parts.append(draw(st.sampled_from("Zz")))
    else:
        parts.append(
            f"{draw(st.sampled_from('+-'))}{draw(st.integers(0, 24)):02d}:"
            f"{draw(st.integers(0, 60)):02d}"
        )
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(0, 10), st.booleans())
def test_random_batches_of_one_layout_agree_with_the_reference(
    data: st.DataObject, frac: int, zulu: bool
) -> None:
    values = data.draw(st.lists(_stamp((frac, zulu)), min_size=1, max_size=20))
    _check(values)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10),
    st.booleans(),
    st.integers(0, 40),
    st.sampled_from(list("0795aZz+-:. Tt\u00e9\n")),
    st.integers(1, 5),
)
def test_a_batch_with_one_changed_character_agrees_or_is_handed_back(
    frac: int, zulu: bool, where: int, char: str, size: int
) -> None:
    fraction = "." + "1234567890"[:frac] if frac else ""
    base = "2024-02-29T23:59:59" + fraction + ("Z" if zulu else "+05:30")
    values = [base] * size
    mutated = base[: where % len(base)] + char + base[where % len(base) + 1 :]
    values[size // 2] = mutated
    got = batch_ms(values, MIN_MS, MAX_MS)
    if got is not None:
        assert got.tolist() == _reference(values)
    ts, bad = _timestamps(list(values), [0] * len(values))
    want = _reference(values)
    assert bad.tolist() == [isinstance(w, str) for w in want]
    assert [t for t, b in zip(ts.tolist(), bad.tolist(), strict=True) if not b] == [
        w for w in want if not isinstance(w, str)
    ]
