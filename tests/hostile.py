"""A structure-aware generator of hostile records: valid grammar, then mutations.

Each line starts as a valid record (the input schema: id, ts, label, predictions of several
models, sometimes extra fields), serialised in one of several valid JSON styles, and then about
half of the lines get one to three mutations, each from one family:

- types: a field or a model entry replaced by a value of another JSON type;
- nesting: arrays/objects nested 2 to 10,000 deep in an extra field or in place of a value;
- numbers: scores of 1e308/-1e308 (overflowing weighted sums), 1e400, NaN/Infinity literals,
  -0.0, 40-digit integers, and invalid forms (leading zeros, ``+1``, ``.5``);
- encodings: invalid UTF-8, a BOM, UTF-16, lone surrogate escapes, NUL and overlong bytes;
- sizes: strings beyond the record size limit, records with more models than allowed, labels
  drawn from thousands of values (the class limit);
- duplicate keys: a repeated ``label``, ``id``, ``ts`` or model entry;
- line breaks: a record split over two lines, two records on one line, a CR inside a line,
  lines of only ``\\x0b``/``\\x0c``, blank lines, raw U+2028 inside strings;
- truncation and timestamps that are ISO 8601 but not RFC 3339, or out of range.

Deterministic for a seed: the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

T0 = 1_795_341_600_000
MODELS = ("m1", "m2", "m3", "wide")
LABELS = ("A", "B", "C", "D")


def _record(rng: random.Random, i: int, clock: int) -> dict[str, Any]:
    truth = rng.choice(LABELS)
    preds: dict[str, Any] = {}
    for model in MODELS[:3]:
        if rng.random() < 0.8:
            if rng.random() < 0.5:
                preds[model] = rng.choice(LABELS)
            else:
                preds[model] = {label: round(rng.random(), 3) for label in LABELS[:3]}
    if rng.random() < 0.3:
        preds["wide"] = f"w{rng.randrange(3000)}"  # thousands of classes: the class limit
    if not preds:
        preds["m1"] = truth
    rec: dict[str, Any] = {
        "id": f"h{i}" if rng.random() < 0.9 else i,
        "label": truth,
        "predictions": preds,
    }
    ts = rng.random()
    if ts < 0.6:
        rec["ts"] = clock
    elif ts < 0.9:
        rec["ts"] = _rfc3339(clock, rng)
    if rng.random() < 0.1:
        rec["note"] = "extra field ✓"
    return rec


def _rfc3339(ms: int, rng: random.Random) -> str:
    from datetime import UTC, datetime, timedelta, timezone

    offset = rng.choice([0, 60, -330])
    when = datetime.fromtimestamp(ms / 1000, UTC).astimezone(timezone(timedelta(minutes=offset)))
    text = when.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if rng.random() < 0.5 else text


def _serialise(rng: random.Random, obj: Any) -> bytes:
    style = rng.random()
    if style < 0.6:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    if style < 0.9:
        return json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode()
    return b"  " + json.dumps(obj).encode() + b" \t"


def _wrong_type(rng: random.Random) -> Any:
    return rng.choice(
        [True, False, None, [], [1], {}, {"x": 1}, 1.5, -0.0, 10**30, "", "x", 2**63, -(2**63) - 1]
    )


def _deep(rng: random.Random) -> str:
    depth = rng.choice([2, 30, 64, 65, 200, 1000, 10_000])
    opener, closer = rng.choice([("[", "]"), ('{"k":', "}")])
    return opener * depth + "1" + closer * depth


Mutation = Callable[[random.Random, dict[str, Any], bytes], bytes]


def _types(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    field = rng.choice(["id", "label", "ts", "predictions", "entry", "score"])
    if field == "entry":
        model = rng.choice(list(rec["predictions"]))
        rec["predictions"][model] = _wrong_type(rng)
    elif field == "score":
        rec["predictions"]["m9"] = {"A": _wrong_type(rng), "B": 0.5}
    else:
        rec[field] = _wrong_type(rng)
    return _serialise(rng, rec)


def _nesting(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    text = _serialise(rng, rec).decode()
    where = rng.choice(["extra", "label", "entry"])
    if where == "extra":
        return (text[:-1] + ',"deep":' + _deep(rng) + "}").encode()
    if where == "label":
        return text.replace('"label":', '"label":' + _deep(rng) + ',"_":', 1).encode()
    return text.replace('"predictions":{', '"predictions":{"mx":' + _deep(rng) + ",", 1).encode()


def _numbers(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    big = rng.choice(
        [
            "1e308",
            "-1e308",
            "1e400",
            "NaN",
            "Infinity",
            "-0.0",
            "1" * 40,
            "01",
            "+1",
            ".5",
            "1.",
            "1e",
            "0x10",
            "4.9e-324",
        ]
    )
    other = rng.choice(["1e308", "-1e308", "0"])
    entry = '{"A":' + big + ',"B":' + other + "}"
    rec["predictions"].pop("m1", None)  # else the record's own m1/m2 would win as duplicates
    rec["predictions"].pop("m2", None)
    text = _serialise(rng, rec).decode()
    return text.replace(
        '"predictions":{', '"predictions":{"m1":' + entry + ',"m2":{"A":' + other + ',"B":0},', 1
    ).encode()


def _encodings(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        cut = rng.randrange(max(1, len(raw)))
        return (
            raw[:cut] + rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"]) + raw[cut:]
        )
    if kind == 1:
        return b"\xef\xbb\xbf" + raw
    if kind == 2:
        return json.dumps(rec).encode("utf-16")
    if kind == 3:
        return raw.replace(b'"label":"', b'"label":"\\ud800', 1)
    if kind == 4:
        return raw.replace(b'"predictions":{', b'"predictions":{"\\udfff":"A",', 1)
    if kind == 5:
        return raw[: len(raw) // 2] + b"\x00" + raw[len(raw) // 2 :]
    return raw.replace(b'"label":"', b'"label":"\xe2\x80\xa8', 1)  # raw U+2028: valid


def _sizes(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        rec["blob"] = "x" * rng.choice([10_000] * 15 + [1_100_000])  # a few over 1 MiB
    elif kind == 1:
        rec["predictions"] = {f"m{k}": "A" for k in range(rng.choice([50, 101, 500]))}
    else:
        rec["predictions"]["m1"] = {f"l{k}": rng.random() for k in range(rng.choice([100, 5000]))}
    return _serialise(rng, rec)


def _duplicates(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    key = rng.choice(["label", "id", "ts", "model"])
    text = raw.decode("utf-8", "replace")
    if key == "model":
        return text.replace('"predictions":{', '"predictions":{"m1":"Z",', 1).encode()
    value = json.dumps(_wrong_type(rng) if rng.random() < 0.5 else "B")
    return (text[:-1] + f',"{key}":{value}}}').encode()


def _line_breaks(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        cut = rng.randrange(1, max(2, len(raw)))
        return raw[:cut] + b"\n" + raw[cut:]
    if kind == 1:
        return raw + rng.choice([b" ", b"", b"\t"]) + raw
    if kind == 2:
        cut = rng.randrange(1, max(2, len(raw)))
        return raw[:cut] + b"\r" + raw[cut:]
    if kind == 3:
        return rng.choice([b"\x0b", b"\x0c", b" \x0c "])
    if kind == 4:
        return raw + b"\n" + rng.choice([b"", b"  ", b"\t", b"\r"])
    return raw + b"\r"


def _truncate(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    return raw[: rng.randrange(max(1, len(raw)))]


def _timestamps(rng: random.Random, rec: dict[str, Any], raw: bytes) -> bytes:
    rec["ts"] = rng.choice(
        [
            "2026-W47-7T10:00:00+00:00",
            "20261122T100000.250+00:00",
            "2026-11-22T10:00:00,250+00:00",
            "2026-11-22T10:00:00+0000",
            "2026-11-22T10:00:00",
            "2026-11-22",
            "2026-11-22t10:00:00.250z",
            "2026-11-22 10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
            253_402_300_800_000,
            -(10**20),
            T0 - 10**9,
            T0 + 10**9,
        ]
    )
    return _serialise(rng, rec)


MUTATIONS: dict[str, Mutation] = {
    "types": _types,
    "nesting": _nesting,
    "numbers": _numbers,
    "encodings": _encodings,
    "sizes": _sizes,
    "duplicates": _duplicates,
    "line breaks": _line_breaks,
    "truncate": _truncate,
    "timestamps": _timestamps,
}


def hostile_lines(n: int, seed: int) -> list[bytes]:
    """``n`` generated records (a mutation may make one record two lines, or none)."""
    rng = random.Random(seed)
    names = list(MUTATIONS)
    out: list[bytes] = []
    clock = T0
    for i in range(n):
        clock += rng.choice([0, 1, 250, 1000, -400_000, 3_600_000]) if rng.random() < 0.2 else 250
        rec = _record(rng, i, clock)
        raw = _serialise(rng, rec)
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                raw = MUTATIONS[rng.choice(names)](rng, json.loads(json.dumps(rec)), raw)
                if not raw or b"\n" in raw:
                    break
        out.append(raw)
    return out
