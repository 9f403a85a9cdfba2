"""Record parsing: what is counted, what is refused and why, through `parse_batch`."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.parsing.batches import DeadLetter, ParsedBatch, RawBatch, parse_batch
from flows.parsing.ensemble import Ensemble
from tests.reference import parse_line
from tests.streams import BAD_LINES, ENSEMBLE_WEIGHTS, BadLine, dumps, good_records

T0 = 1_795_341_600_000  # 2026-11-22T10:00:00.000Z
FALLBACK = 1_234_567
Row = tuple[str, str, Any, int]  # truth, prediction, id, epoch ms


def parse(values: list[bytes], fallback: int = FALLBACK, start: int = 1) -> ParsedBatch:
    return parse_batch(
        RawBatch(
            values,
            [fallback] * len(values),
            "test-origin",
            list(range(start, start + len(values))),
            {"topic": "t"},
        )
    )


def rows_by_model(parsed: ParsedBatch) -> dict[str, list[Row]]:
    """Each model's counted records as plain values, whatever the columns' encoding."""
    out: dict[str, list[Row]] = {}
    for model, cols in parsed.by_model.items():
        labels = getattr(cols, "labels", None)

        def names(column: Any, table: list[str] | None = labels) -> list[str]:
            values = column.tolist() if hasattr(column, "tolist") else list(column)
            return [table[v] for v in values] if table is not None else values

        ts = cols.ts.tolist() if hasattr(cols.ts, "tolist") else list(cols.ts)
        out[model] = list(zip(names(cols.truth), names(cols.pred), list(cols.ids), ts, strict=True))
    return {model: rows for model, rows in out.items() if rows}


def record(**fields: Any) -> bytes:
    base: dict[str, Any] = {"id": "r1", "ts": T0, "label": "a", "predictions": {"m": "a"}}
    base.update(fields)
    return dumps({k: v for k, v in base.items() if v is not ...})


def only_prediction(entry: Any) -> str:
    parsed = parse([record(predictions={"m": entry})])
    assert parsed.dead == []
    return rows_by_model(parsed)["m"][0][1]


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("bad", BAD_LINES, ids=lambda b: b.kind)
def test_each_bad_line_gives_its_specific_reason(bad: BadLine) -> None:
    parsed = parse([bad.raw], start=41)
    assert len(parsed.dead) == 1, [d.reason for d in parsed.dead]
    letter = parsed.dead[0]
    assert bad.reason in letter.reason
    assert (letter.model, letter.raw, letter.origin, letter.position) == (
        bad.model,
        bad.raw,
        "test-origin",
        41,
    )
    assert dict(letter.headers) == {"topic": "t"}
    counted = rows_by_model(parsed)
    if bad.scope == "record":
        assert (parsed.records, parsed.rejected_records, parsed.rejected_entries) == (0, 1, 0)
        assert counted == {}
    else:
        assert (parsed.records, parsed.rejected_records, parsed.rejected_entries) == (1, 0, 1)
        assert sorted(counted) == sorted(bad.counted)


def test_dead_letter_document_keeps_the_raw_line() -> None:
    text = DeadLetter(b'{"id": 1}', "missing 'label'", "in.jsonl", 3, None, {"k": "v"}).to_json()
    assert text == {
        "reason": "missing 'label'",
        "scope": "record",
        "raw": '{"id": 1}',
        "source": {"origin": "in.jsonl", "position": 3, "k": "v"},
    }
    binary = DeadLetter(b"\xff\x00", "not valid UTF-8", "in.jsonl", 4, "m").to_json()
    assert binary["raw_hex"] == "ff00"
    assert (binary["scope"], binary["model"]) == ("entry", "m")
    assert "raw" not in binary


@pytest.mark.parametrize("value", [b"", b"   ", b"\n"], ids=["empty", "spaces", "newline"])
def test_an_empty_message_is_refused_not_dropped(value: bytes) -> None:
    """Kafka can deliver an empty value; nothing may be dropped silently."""
    parsed = parse([record(id="before"), value, record(id="after")])
    assert [d.raw for d in parsed.dead] == [value]
    assert [row[2] for row in rows_by_model(parsed)["m"]] == ["before", "after"]


def test_two_documents_in_one_message_are_refused() -> None:
    value = record(id="one") + b"\n" + record(id="two")
    parsed = parse([value, b"", record(id="three")])
    assert [d.raw for d in parsed.dead] == [value, b""]
    assert [row[2] for row in rows_by_model(parsed)["m"]] == ["three"]


def test_a_pretty_printed_record_is_one_valid_record() -> None:
    pretty = json.dumps(
        {"id": "p", "ts": T0, "label": "a", "predictions": {"m": "b"}}, indent=2
    ).encode()
    parsed = parse([record(id="x"), pretty, record(id="y")])
    assert parsed.dead == []
    assert [row[2] for row in rows_by_model(parsed)["m"]] == ["x", "p", "y"]


# ----------------------------------------------------------------------------- labels and ties


def test_integer_labels_become_their_decimal_strings() -> None:
    parsed = parse(
        [
            record(label=7, predictions={"bare": 7, "text": "7", "map": {"7": 1}}),
            record(id=2, label=2**70, predictions={"bare": 2**70}),
        ]
    )
    assert parsed.dead == []
    rows = rows_by_model(parsed)
    assert [row[:2] for row in rows["bare"]] == [("7", "7"), (str(2**70), str(2**70))]
    assert rows["text"][0][:2] == ("7", "7")
    assert rows["map"][0][:2] == ("7", "7")
    assert rows["bare"][1][2] == 2  # integer ids stay integers


@pytest.mark.parametrize(
    "ensemble", [None, Ensemble({"m": 1.0}, "ens")], ids=["no-ensemble", "ensemble"]
)
@pytest.mark.parametrize("extra_entry", [{}, {"bad": []}], ids=["alone", "with-a-bad-entry"])
def test_an_integer_beyond_64_bits_gets_the_same_verdict_on_every_path(
    ensemble: Ensemble | None, extra_entry: dict[str, Any]
) -> None:
    """A record is judged the same whether or not something else sends it the slow way."""
    big = 2**70
    raw = dumps({"id": "big", "label": big, "predictions": {"m": big, **extra_entry}})
    parsed = parse_batch(RawBatch([raw], [0], "o", [1]), ensemble)
    assert [d.model for d in parsed.dead] == (["bad"] if extra_entry else [])
    assert rows_by_model(parsed)["m"] == [(str(big), str(big), "big", 0)]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"b": 0.5, "a": 0.5}, "a"),
        ({"a": 0.5, "B": 0.5}, "B"),  # "B" sorts before "a"
        ({"7": 0.4, "42": 0.4, "9": 0.1}, "42"),  # string order, not numeric
        ({"x": 1, "y": 1.0}, "x"),
        ({"y": 0.0, "x": -0.0}, "x"),
        ({"ñ": 0.3, "n": 0.3, "z": 0.2}, "n"),
        ({"c": 0.1, "b": 0.9, "a": 0.9}, "a"),
        ({"only": -5}, "only"),
        ({"a": 1e-300, "b": 0}, "a"),
    ],
)
def test_arg_max_ties_go_to_the_label_that_sorts_first(
    scores: dict[str, float], expected: str
) -> None:
    assert only_prediction(scores) == expected


# ----------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (T0 + 250, T0 + 250),
        (-1, -1),
        ("2026-11-22T10:00:00.250Z", T0 + 250),
        ("2026-11-22T15:30:00.250+05:30", T0 + 250),
        ("2026-11-22T02:00:00.250-08:00", T0 + 250),
        ("2026-11-22T10:00:00+00:00", T0),
        ("2026-11-22T10:00:00.1Z", T0 + 100),
        ("2026-11-22T10:00:00.123456789Z", T0 + 123),
        ("2026-11-22t10:00:00.250z", T0 + 250),  # RFC 3339 5.6: T and Z may be lower case
        ("2026-11-22 10:00:00.250Z", T0 + 250),  # its note: a space may separate date and time
        ("2026-11-22T10:00:00.250-00:00", T0 + 250),  # "-00:00": UTC, local offset unknown
        ("0001-01-01T00:00:00Z", -62_135_596_800_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ],
)
def test_timestamps(ts: Any, expected: int) -> None:
    parsed = parse([record(ts=ts)])
    assert [d.reason for d in parsed.dead] == []
    assert rows_by_model(parsed)["m"][0][3] == expected


@pytest.mark.parametrize("ts", [..., None], ids=["missing", "null"])
def test_missing_ts_uses_the_fallback(ts: Any) -> None:
    parsed = parse([record(ts=ts), record(id=2)], fallback=FALLBACK)
    assert [row[3] for row in rows_by_model(parsed)["m"]] == [FALLBACK, T0]


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("2026-11-22", "'ts' needs a date, a time and a UTC offset"),
        ("2026-11-22T10:00:00", "'ts' needs a date, a time and a UTC offset"),
        ("not a time", "'ts' is not an RFC 3339 timestamp"),
        (253_402_300_800_000, "'ts' 253402300800000 is out of range"),
        ("0001-01-01T00:00:00+01:00", "'ts'"),  # before year 1 once in UTC
        ("9999-12-31T23:59:59-01:00", "'ts'"),  # after year 9999 once in UTC
        ("2026-W47-7T10:00:00+00:00", "not RFC 3339"),  # issue 10 break 7: ISO 8601 forms
        ("20261122T100000.250+00:00", "not RFC 3339"),
        ("2026-11-22T10:00:00,250+00:00", "not RFC 3339"),
        ("2026-11-22T10:00:00+0000", "not RFC 3339"),
        ("2026-11-22T10:00:00.250+00", "not RFC 3339"),
        ("2026-11-22T10:00+00:00", "'ts'"),
        ("2026-11-22T10:00:00.Z", "'ts'"),
        ("2026-11-22T10:00:00Z\n", "'ts'"),
        ("\u0662026-11-22T10:00:00Z", "'ts'"),  # an Arabic-Indic digit
    ],
    ids=[
        "date-only",
        "no-offset",
        "text",
        "epoch-ms-too-large",
        "before-year-1",
        "after-year-9999",
        "week-date",
        "basic-format",
        "comma-fraction",
        "offset-no-colon",
        "offset-hours-only",
        "no-seconds",
        "empty-fraction",
        "trailing-newline",
        "non-ascii-digit",
    ],
)
def test_bad_timestamps_refuse_the_record(ts: Any, reason: str) -> None:
    parsed = parse([record(ts=ts)])
    assert [d.reason for d in parsed.dead if reason in d.reason] != [], (
        f"ts {ts!r} gave {[d.reason for d in parsed.dead]} and counted {rows_by_model(parsed)}"
    )
    assert rows_by_model(parsed) == {}


# ----------------------------------------------------------------------------- differential


def _pool() -> list[bytes]:
    pretty = json.dumps(
        {"id": "pretty", "label": "c01", "predictions": {"model1": "c01"}}, indent=1
    ).encode()
    lines = [dumps(r) for r in good_records(60, seed=11)]
    wide = {f"k{i:02d}": round(0.01 * (i % 7), 2) for i in range(30)}
    edge_records = [
        {"id": 0, "ts": 0, "label": 0, "predictions": {"model1": 0, "model2": "0"}},
        {"id": -3, "ts": -1, "label": -5, "predictions": {"model1": {"-5": 1, "5": 1}}},
        {"id": "w", "label": "k06", "predictions": {"model1": wide, "模型": "k00"}},
        {"id": "z", "label": "c00", "predictions": {"model1": {"b": 0.0, "a": -0.0}}},
    ]
    return [
        *lines,
        *(bad.raw for bad in BAD_LINES),
        *map(dumps, edge_records),
        pretty,
        b"",
        b" \t",
        b" " + lines[0] + b" ",
        b"\xef\xbb\xbf" + lines[1],
        lines[2] + b"\n" + lines[3],
        b'{"id": 1, "label": "a", "label": "b", "predictions": {"m": "a", "m": "b"}}',
        b'{"id": 2, "label": "a", "predictions": {"m": {"a": 0.9, "b": 0.5, "a": 0.1}}}',
        b'{"id": 3, "ts": "x", "ts": 5, "label": "a", "predictions": {"m": "a"}}',
    ]


POOL = _pool()


@given(
    picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=60),
    cuts=st.lists(st.integers(1, 25), min_size=1, max_size=5),
    with_ensemble=st.booleans(),
)
def test_parse_batch_agrees_with_the_reference_on_any_mix_and_split(
    picks: list[int], cuts: list[int], with_ensemble: bool
) -> None:
    """Whatever the batch boundaries, every line gets the reference's verdict, in read order
    (an ensemble sends every record through the detailed path)."""
    lines = [POOL[i] for i in picks]
    fallback = [T0 - 1000 - i for i in range(len(lines))]
    weights = ENSEMBLE_WEIGHTS if with_ensemble else {}
    ensemble = Ensemble(ENSEMBLE_WEIGHTS, "ens") if with_ensemble else None
    want_rows: dict[str, list[Row]] = defaultdict(list)
    want_dead: list[tuple[int, str | None]] = []
    for i, line in enumerate(lines):
        rec, refused = parse_line(i, line, weights, "ens")
        want_dead.extend((r.index, r.model) for r in refused)
        if rec is not None:
            for model, pred in rec.predictions.items():
                want_rows[model].append(
                    (rec.label, pred, rec.id, fallback[i] if rec.ts is None else rec.ts)
                )

    got_rows: dict[str, list[Row]] = defaultdict(list)
    got_dead: list[tuple[int, str | None]] = []
    start, turn = 0, 0
    while start < len(lines):
        stop = min(len(lines), start + cuts[turn % len(cuts)])
        parsed = parse_batch(
            RawBatch(lines[start:stop], fallback[start:stop], "o", list(range(start, stop))),
            ensemble,
        )
        for model, rows in rows_by_model(parsed).items():
            got_rows[model].extend(rows)
        got_dead.extend((d.position, d.model) for d in parsed.dead)
        assert parsed.records + parsed.rejected_records == stop - start
        start, turn = stop, turn + 1

    assert dict(got_rows) == dict(want_rows)
    assert sorted(got_dead, key=repr) == sorted(want_dead, key=repr)
