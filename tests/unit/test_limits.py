"""Resource limits (issue 10 break 9): what is refused at each limit, and why, on every path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.connectors.files import JsonLinesSource
from flows.limits import Limits
from flows.parsing.batches import DeadLetter, RawBatch, parse_batch
from flows.windows.count import CountPolicy
from flows.windows.model_state import ModelWindowLogic
from tests.streams import dumps

T0 = 1_795_341_600_000


def record(i: int, label: str = "A", pred: Any = "A", **extra: Any) -> bytes:
    return dumps({"id": f"r{i}", "ts": T0 + i, "label": label, "predictions": {"m": pred}, **extra})


def dead_of(values: list[bytes], limits: Limits, size: int) -> list[tuple[int, str | None, str]]:
    out = []
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        parsed = parse_batch(
            RawBatch(chunk, [0] * len(chunk), "o", list(range(start + 1, start + len(chunk) + 1))),
            None,
            limits,
        )
        out += [(d.position, d.model, d.reason) for d in parsed.dead]
    return out


@pytest.mark.parametrize("size", [1, 4, 100])
def test_a_record_over_max_record_bytes_is_refused_naming_the_variable(size: int) -> None:
    limits = Limits(record_bytes=200)
    values = [record(1), record(2, note="x" * 300), record(3)]
    assert dead_of(values, limits, size) == [
        (2, None, "record is longer than CONFUSION_MAX_RECORD_BYTES=200 bytes")
    ]


@pytest.mark.parametrize("size", [1, 4, 100])
def test_a_record_over_max_models_is_refused_naming_the_variable(size: int) -> None:
    limits = Limits(models=3)
    wide = dumps({"id": "w", "label": "A", "predictions": {f"m{k}": "A" for k in range(4)}})
    three = dumps({"id": "t", "label": "A", "predictions": {f"m{k}": "A" for k in range(3)}})
    values = [record(1), wide, three, record(3)]
    assert dead_of(values, limits, size) == [
        (2, None, "record has 4 model entries, more than CONFUSION_MAX_MODELS=3")
    ]


def feed(
    values: list[bytes], cuts: list[int], limit: int
) -> tuple[list[str], list[DeadLetter], list[str]]:
    logic = ModelWindowLogic(CountPolicy(1000), 10_000, None, max_classes=limit)
    letters: list[DeadLetter] = []
    start = 0
    for end in cuts:
        parsed = parse_batch(
            RawBatch(
                values[start:end],
                [0] * (end - start),
                "o",
                list(range(start + 1, end + 1)),
                {"topic": "t"},
            )
        )
        out, _ = logic.on_batch([parsed.by_model["m"]])
        letters += [x for x in out if isinstance(x, DeadLetter)]
        start = end
    (doc,), _ = logic.on_eof()
    assert isinstance(doc, dict)
    return doc["labels"], letters, [str(i) for i in range(doc["seq"])]


def test_max_classes_refuses_records_with_new_labels_once_the_model_is_full() -> None:
    """10,000 distinct labels made a 16,000 x 16,000 matrix (5.1 GB) and a 201 MB document."""
    values = [record(i, label=f"c{i % 7}", pred=f"c{(i + 1) % 7}") for i in range(30)]
    labels, letters, _ = feed(values, [30], limit=4)
    assert sorted(labels) == ["c0", "c1", "c2", "c3"]
    # r0 brings c0, c1; r1 c2; r2 c3; r3 (c3 -> c4) is refused, and so is every later record
    # that needs c4, c5 or c6.
    refused = [i for i in range(30) if {f"c{i % 7}", f"c{(i + 1) % 7}"} - set(labels)]
    assert [d.position for d in letters] == [i + 1 for i in refused]
    assert all(
        d.model == "m" and "CONFUSION_MAX_CLASSES" in d.reason and "limit of 4 classes" in d.reason
        for d in letters
    )
    assert letters[0].raw == dumps(
        {"id": "r3", "ts": T0 + 3, "label": "c3", "predictions": {"m": "c4"}}
    )
    assert dict(letters[0].headers) == {"topic": "t"} and letters[0].origin == "o"


def test_max_classes_gives_the_same_verdict_for_any_batching() -> None:
    values = [record(i, label=f"c{(i * 5) % 11}", pred=f"c{(i * 3) % 13}") for i in range(60)]
    results = [
        feed(values, cuts, limit=6)
        for cuts in ([60], list(range(1, 61)), [7, 14, 21, 28, 35, 42, 49, 56, 60])
    ]
    first = results[0]
    for labels, letters, seq in results[1:]:
        assert (labels, seq) == (first[0], first[2])
        assert [(d.position, d.raw, d.reason) for d in letters] == [
            (d.position, d.raw, d.reason) for d in first[1]
        ]


def test_the_limit_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    import flows.limits

    flows.limits._warned.discard("CONFUSION_MAX_RECORD_BYTES")
    with caplog.at_level("WARNING"):
        dead_of([record(1, note="x" * 300)] * 5, Limits(record_bytes=100), 5)
    lines = [r for r in caplog.records if "CONFUSION_MAX_RECORD_BYTES" in r.getMessage()]
    assert len(lines) == 1


def test_the_file_source_never_holds_more_of_a_line_than_the_limit(tmp_path: Path) -> None:
    """A line of megabytes is cut at the limit + 1 byte and the rest skipped, not read whole."""
    path = tmp_path / "in.jsonl"
    huge = record(2, note="x" * 3_000_000)
    exact = record(3, note="y" * (300 - len(record(3, note=""))))
    assert len(exact) == 300
    cut_at_cr = record(5, note="z" * (299 - len(record(5, note=""))))[:-1] + b'\r\r\rjunk"}'
    path.write_bytes(
        record(1) + b"\n" + huge + b"\r\n" + exact + b"\r\n" + cut_at_cr + b"\n" + record(4)
    )
    part = JsonLinesSource(path, 1000, max_bytes=300).build_part("read", str(path), None)
    try:
        batch = part.next_batch()[0]
    finally:
        part.close()
    assert [len(v) for v in batch.values] == [len(record(1)), 301, 300, 301, len(record(4))]
    assert batch.values[1] == huge[:301]
    assert list(batch.positions) == [1, 2, 3, 4, 5]
    parsed = parse_batch(batch, None, Limits(record_bytes=300))
    assert [(d.position, d.reason) for d in parsed.dead] == [
        (2, "record is longer than CONFUSION_MAX_RECORD_BYTES=300 bytes"),
        (4, "record is longer than CONFUSION_MAX_RECORD_BYTES=300 bytes"),
    ]
