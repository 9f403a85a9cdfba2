"""Regressions of issue 10: bad input that crashed, fooled or slowed the parser.

Each test names the break it pins down. The fast path (one decode per batch) and the detailed
path (one record at a time) must reach the same verdict on every record, so most checks compare
a batch against the same lines parsed one per batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.connectors.files import JsonLinesSource
from flows.parsing.batches import ParsedBatch, RawBatch, parse_batch
from tests.streams import dumps

T0 = 1_795_341_600_000


def record(i: int, **fields: Any) -> bytes:
    base: dict[str, Any] = {
        "id": f"r{i}",
        "ts": T0 + i,
        "label": "A",
        "predictions": {"m": "A", "m2": {"A": 0.2, "B": 0.8}},
    }
    base.update(fields)
    return dumps({k: v for k, v in base.items() if v is not ...})


def parse(values: list[bytes]) -> ParsedBatch:
    return parse_batch(RawBatch(values, [0] * len(values), "o", list(range(1, len(values) + 1))))


def verdicts(parsed: ParsedBatch) -> tuple[dict[str, list[Any]], list[tuple[int, str | None, str]]]:
    """Counted ids per model, and the dead letters as (position, model, reason)."""
    counted = {m: list(c.ids) for m, c in parsed.by_model.items()}
    return counted, [(d.position, d.model, d.reason) for d in parsed.dead]


def one_by_one(
    values: list[bytes],
) -> tuple[dict[str, list[Any]], list[tuple[int, str | None, str]]]:
    counted: dict[str, list[Any]] = {}
    dead = []
    for i, value in enumerate(values):
        parsed = parse_batch(RawBatch([value], [0], "o", [i + 1]))
        for m, c in parsed.by_model.items():
            counted.setdefault(m, []).extend(c.ids)
        dead += [(d.position, d.model, d.reason) for d in parsed.dead]
    return counted, dead


WIRE_FAILURES = {
    "no label": {"label": ...},
    "boolean id": {"id": True},
    "array label": {"label": ["A"]},
    "object ts": {"ts": {"at": 1}},
    "predictions a list": {"predictions": ["A"]},
    "one bad entry": {"predictions": {"m": "A", "m3": {"A": "high"}}},
}


@pytest.mark.parametrize("fields", list(WIRE_FAILURES.values()), ids=list(WIRE_FAILURES))
def test_break1_a_batch_of_wire_failures_dead_letters_every_record(fields: dict[str, Any]) -> None:
    """1,500 failures in one batch crashed with RecursionError (one level per failure)."""
    values = [record(i, **fields) for i in range(1500)]
    parsed = parse(values)
    counted, dead = verdicts(parsed)
    if "m3" in fields.get("predictions", ()):  # only the entry m3 is refused
        assert counted["m"] == [f"r{i}" for i in range(1500)]
        assert [(p, m) for p, m, _ in dead] == [(i + 1, "m3") for i in range(1500)]
    else:
        assert counted == {}
        assert [p for p, _, _ in dead] == list(range(1, 1501))
        assert parsed.rejected_records == 1500


def test_break1_failures_scattered_through_a_batch_keep_every_good_record() -> None:
    values = [record(i, id=True) if i % 3 == 0 else record(i) for i in range(3000)]
    assert verdicts(parse(values)) == one_by_one(values)


def test_break2_a_line_with_two_documents_then_a_wire_failure() -> None:
    """`A A` then `"id": true` recursed forever: msgspec counts documents, not lines."""
    for first in (record(0) + b" " + record(1), record(0) + b"\r" + record(1)):
        values = [first, record(2, id=True), record(3)]
        counted, dead = verdicts(parse(values))
        assert counted == {"m": ["r3"], "m2": ["r3"]}
        assert [p for p, _, _ in dead] == [1, 2]


def test_break3_invalid_utf8_at_the_end_of_a_batch() -> None:
    """The UTF-8 error offset is inside one string, not the batch: retries dropped good records."""
    values = [record(i) for i in range(999)] + [record(999, label="XFF").replace(b"XFF", b"\xff")]
    counted, dead = verdicts(parse(values))
    assert counted["m"] == [f"r{i}" for i in range(999)]
    assert [(p, r.split(" (")[0]) for p, _, r in dead] == [(1000, "not valid UTF-8")]


def test_break6_a_split_record_next_to_a_two_document_line_is_refused_not_miscounted() -> None:
    """The documents of a split record and of a two-document line added up to the line count,
    so the batch decode attached documents to the wrong lines and refused nothing."""
    half = dumps({"id": "x1", "ts": T0, "label": "A", "predictions": {"m": "A"}})[:-1] + b","
    values = [record(0), half, b'"note":"rest"}', record(1) + b" " + record(2), record(3)]
    assert verdicts(parse(values)) == one_by_one(values)
    counted, dead = verdicts(parse(values))
    assert counted["m"] == ["r0", "r3"]
    assert [p for p, _, _ in dead] == [2, 3, 4]


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_fast_and_detailed_paths_agree_on_every_record_for_any_batch_size(size: int) -> None:
    mixed = [
        record(0),
        record(1, id=True),
        record(2, note={"deep": [[1]]}),
        b"",
        record(3) + b" " + record(4),
        record(5, label="XFF").replace(b"XFF", b"\xff"),
        record(6, predictions={"m": {"A": 1e400}}),
        record(7, ts="2026-11-22T10:00:00Z"),
    ]
    values = mixed * 40
    counted: dict[str, list[Any]] = {}
    dead: list[tuple[int, str | None, str]] = []
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        parsed = parse_batch(
            RawBatch(chunk, [0] * len(chunk), "o", list(range(start + 1, start + len(chunk) + 1)))
        )
        for m, c in parsed.by_model.items():
            counted.setdefault(m, []).extend(c.ids)
        dead += [(d.position, d.model, d.reason) for d in parsed.dead]
    assert (counted, dead) == one_by_one(values)


@pytest.mark.parametrize("size", [1, 3])
def test_break4_deep_nesting_is_dead_lettered_with_its_reason(size: int) -> None:
    """1,000 nested arrays raised RecursionError in the decoders, even at batch size 1."""
    deep_extra = record(1)[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    values = [b"[" * 1000 + b"]" * 1000, deep_extra, record(2)]
    dead = []
    for start in range(0, 3, size):
        dead += verdicts(
            parse_batch(
                RawBatch(
                    values[start : start + size],
                    [0] * size,
                    "o",
                    list(range(start + 1, start + size + 1)),
                )
            )
        )[1]
    assert dead == [
        (1, None, "arrays and objects nest deeper than 64 levels"),
        (2, None, "arrays and objects nest deeper than 64 levels"),
    ]


def test_break4_the_nesting_limit_is_64_levels_on_every_path() -> None:
    def nested(depth: int) -> bytes:  # the record itself is level 1
        return record(depth)[:-1] + b',"x":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    brackets_in_strings = record(0, note="[" * 500)
    values = [nested(64), nested(65), brackets_in_strings, record(3)]
    counted, dead = verdicts(parse(values))
    assert counted["m"] == ["r64", "r0", "r3"]
    assert [p for p, _, _ in dead] == [2]
    assert (counted, dead) == one_by_one(values)


def test_break7_lines_of_vertical_tab_or_form_feed_are_dead_lettered_not_dropped(
    tmp_path: Path,
) -> None:
    """bytes.strip() took \\x0b and \\x0c for blank; JSON whitespace is space, tab, CR, LF."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([record(1), b"\x0b", b" \t\r", b"\x0c", b"", record(2)]) + b"\n")
    part = JsonLinesSource(path, 1000).build_part("read", str(path), None)
    try:
        batch = part.next_batch()[0]
    finally:
        part.close()
    assert list(batch.positions) == [1, 2, 4, 6]
    parsed = parse_batch(batch)
    assert [(d.position, d.raw) for d in parsed.dead] == [(2, b"\x0b"), (4, b"\x0c")]
    assert all(d.reason.startswith("not valid JSON") for d in parsed.dead)
