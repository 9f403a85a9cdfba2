"""Deterministic adversarial input streams for the contract, and the catalogue of bad lines.

Every generator depends only on its arguments (``random.Random(seed)``), so a failing test names a
stream that can be rebuilt exactly. Good records stress what the contract allows: many classes,
labels that first appear late, score ties, integer and unicode labels, unicode model names, models
missing from some records, bare labels and score maps mixed, epoch-ms and RFC 3339 times with
offsets, missing ``ts``. `BAD_LINES` holds one line of every malformed kind with the dead letter
it must produce; `adversarial_stream` interleaves both, with blank lines.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from flows.demo import sample_lines

Scope = Literal["record", "entry"]


START_MS = 1_795_341_600_000  # 2026-11-22T10:00:00Z
STEP_MS = 250


def dumps(obj: Any) -> bytes:
    """Compact JSON with non-ASCII text kept as UTF-8 (as most producers write it)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class BadLine:
    """A malformed line and the dead letter it must produce.

    Attributes:
        kind: a short name for the test id.
        raw: the line's bytes.
        scope: ``record`` when the whole line is refused, ``entry`` when one model entry is.
        model: the refused entry's model (``entry`` scope only).
        reason: text the dead letter's reason must contain (names the field and the problem).
        counted: models whose entry is still counted (``entry`` scope only).
    """

    kind: str
    raw: bytes
    scope: Scope
    reason: str
    model: str | None = None
    counted: tuple[str, ...] = ()


def _entry_bad(kind: str, model: str, value: Any, reason: str) -> BadLine:
    record = {
        "id": f"bad-{kind}",
        "ts": START_MS,
        "label": "c00",
        "predictions": {"model1": {"c00": 0.9, "c01": 0.1}, model: value, "model2": "c00"},
    }
    return BadLine(
        kind, dumps(record), "entry", f"model {model!r}: {reason}", model, ("model1", "model2")
    )


def _record_bad(kind: str, raw: bytes | dict[str, Any], reason: str) -> BadLine:
    return BadLine(kind, raw if isinstance(raw, bytes) else dumps(raw), "record", reason)


_DROP = object()  # a field left out of the record


def _good(**overrides: Any) -> dict[str, Any]:
    """A valid record with ``overrides`` applied (``_DROP`` removes a field)."""
    record: dict[str, Any] = {
        "id": "bad",
        "ts": START_MS,
        "label": "c00",
        "predictions": {"model1": "c00"},
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not _DROP}


_NOT_A_PREDICTION = "prediction must be a label (string or integer) or a map of label to score"

BAD_LINES: tuple[BadLine, ...] = (
    _record_bad(
        "truncated-json", b'{"id": "bad-1", "label": "c00", "predictions": {', "not valid JSON"
    ),
    _record_bad(
        "nan-literal",
        b'{"id": "bad-2", "label": "c00", "predictions": {"model1": {"c00": NaN, "c01": 0.5}}}',
        "not valid JSON",
    ),
    _record_bad(
        "trailing-garbage",
        b'{"id": "bad-3", "label": "c00", "predictions": {"model1": "c00"}} extra',
        "not valid JSON",
    ),
    _record_bad(
        "invalid-utf8",
        b'{"id": "bad-4", "label": "c\xff\xfe", "predictions": {"model1": "c00"}}',
        "not valid UTF-8",
    ),
    _record_bad(
        "top-level-array",
        b'[{"id": "bad-5", "label": "c00"}]',
        "record must be a JSON object, got an array",
    ),
    _record_bad("top-level-string", b'"c00"', "record must be a JSON object, got a string"),
    _record_bad("top-level-number", b"42", "record must be a JSON object, got a number"),
    _record_bad("top-level-null", b"null", "record must be a JSON object, got null"),
    _record_bad("missing-id", _good(id=_DROP), "missing 'id'"),
    _record_bad(
        "boolean-id", _good(id=True), "'id' must be a non-empty string or an integer, got a boolean"
    ),
    _record_bad("missing-label", _good(label=_DROP), "missing 'label'"),
    _record_bad("empty-label", _good(label=""), "'label' is an empty string"),
    _record_bad(
        "boolean-label",
        _good(label=False),
        "'label' must be a non-empty string or an integer, got a boolean",
    ),
    _record_bad(
        "float-label",
        _good(label=1.5),
        "'label' must be a non-empty string or an integer, got a number",
    ),
    _record_bad(
        "nested-label",
        _good(label={"name": ["c00"]}),
        "'label' must be a non-empty string or an integer, got an object",
    ),
    _record_bad("missing-predictions", _good(predictions=_DROP), "missing 'predictions'"),
    _record_bad(
        "predictions-array",
        _good(predictions=[["model1", "c00"]]),
        "'predictions' must be an object of model to prediction, got an array",
    ),
    _record_bad("empty-predictions", _good(predictions={}), "'predictions' is empty"),
    _record_bad(
        "ts-not-rfc3339", _good(ts="yesterday at noon"), "'ts' is not an RFC 3339 timestamp"
    ),
    _record_bad(
        "ts-without-offset",
        _good(ts="2026-11-22T10:00:00"),
        "'ts' needs a date, a time and a UTC offset",
    ),
    _record_bad(
        "ts-boolean",
        _good(ts=True),
        "'ts' must be an RFC 3339 string or epoch milliseconds (integer), got a boolean",
    ),
    _record_bad(
        "ts-float",
        _good(ts=1795341600000.5),
        "'ts' must be an RFC 3339 string or epoch milliseconds (integer), got a number",
    ),
    _record_bad(
        "only-entry-infinite",
        b'{"id": "bad-6", "label": "c00", "predictions": {"model1": {"c00": 1e999, "c01": 0.5}}}',
        "no valid model entry: model 'model1': score of 'c00' is not a finite number",
    ),
    _record_bad(
        "only-entry-text-score",
        _good(predictions={"model1": {"c00": "high"}}),
        "no valid model entry: model 'model1': score of 'c00' is not a number",
    ),
    _record_bad(
        "only-entry-boolean-score",
        _good(predictions={"model1": {"c00": True}}),
        "no valid model entry: model 'model1': score of 'c00' is not a number",
    ),
    _entry_bad("entry-array", "bad_array", ["c00", 0.9], f"{_NOT_A_PREDICTION}, got an array"),
    _entry_bad("entry-null", "bad_null", None, f"{_NOT_A_PREDICTION}, got null"),
    _entry_bad("entry-float", "bad_float", 0.5, f"{_NOT_A_PREDICTION}, got a number"),
    _entry_bad("entry-boolean", "bad_bool", True, f"{_NOT_A_PREDICTION}, got a boolean"),
    _entry_bad("entry-empty-label", "bad_empty", "", "predicted label is an empty string"),
    _entry_bad("entry-empty-map", "bad_map", {}, "empty score map"),
    _entry_bad(
        "entry-empty-score-label", "bad_key", {"": 0.7, "c00": 0.3}, "score map has an empty label"
    ),
    _entry_bad("entry-text-score", "bad_text", {"c00": "0.9"}, "score of 'c00' is not a number"),
    _entry_bad(
        "entry-nested-score", "bad_nested", {"c00": {"p": 0.9}}, "score of 'c00' is not a number"
    ),
    BadLine(
        "entry-infinite-score",
        b'{"id": "bad-8", "label": "c00", "predictions": {"model1": '
        b'{"c00": 0.9}, "bad_inf": {"c00": -1e400, "c01": 0.5}, "model2": "c00"}}',
        "entry",
        "model 'bad_inf': score of 'c00' is not a finite number",
        "bad_inf",
        ("model1", "model2"),
    ),
    _entry_bad(
        "entry-huge-integer-score",
        "bad_big",
        {"c00": 10**400},
        "score of 'c00' is not a finite number",
    ),
    BadLine(
        "entry-empty-model-name",
        dumps(
            {
                "id": "bad-7",
                "ts": START_MS,
                "label": "c00",
                "predictions": {"": "c00", "model2": "c01"},
            }
        ),
        "entry",
        "model '': model name is empty",
        "",
        ("model2",),
    ),
)

BLANK_LINES: tuple[bytes, ...] = (b"", b"   ", b"\t")


# ----------------------------------------------------------------------------- good records

CLASSES = tuple(f"c{k:02d}" for k in range(20))
LATE_CLASSES = CLASSES[15:]  # never seen before 60 % of the stream
UNICODE_LABELS = ("ñandú", "猫", "🙂", "Ωmega")
INTEGER_LABELS = (7, 42)  # 7 and "7" are the same label; "42" sorts before "7"
MODELS = ("model1", "model2", "modèle-é", "模型", "int_model")
ENSEMBLE_WEIGHTS = {"model1": 0.5, "modèle-é": 0.3, "int_model": 0.2}


def rfc3339(
    epoch_ms: int, offset_minutes: int = 0, fraction_digits: int = 3, zulu: bool = True
) -> str:
    """The instant ``epoch_ms`` as RFC 3339 local time at ``offset_minutes`` east of UTC."""
    tz = timezone(timedelta(minutes=offset_minutes))
    local = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC).astimezone(tz)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction_digits:
        text += "." + f"{epoch_ms % 1000:03d}".ljust(fraction_digits, "0")[:fraction_digits]
    if offset_minutes == 0 and zulu:
        return text + "Z"
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def _ts_value(i: int, epoch_ms: int) -> Any:
    """Cycle through every time form the contract allows (and a missing or null ``ts``)."""
    form = i % 9
    if form == 0:
        return epoch_ms
    if form == 1:
        return rfc3339(epoch_ms)
    if form == 2:
        return rfc3339(epoch_ms, 330)  # +05:30
    if form == 3:
        return rfc3339(epoch_ms, -480, 6)  # -08:00, microseconds
    if form == 4:
        return rfc3339(epoch_ms, 0, 9, zulu=False)  # +00:00, nanoseconds
    if form == 5:
        return _DROP  # missing: the fallback time
    if form == 6:
        return rfc3339(epoch_ms - epoch_ms % 1000, 60, 0)  # whole seconds, +01:00
    if form == 7:
        return None  # null: the fallback time too
    return rfc3339(epoch_ms, -150)  # -02:30


def _label_pool(rng: random.Random, i: int, n: int) -> list[Any]:
    pool: list[Any] = list(CLASSES[:15])
    if i >= n * 3 // 5:
        pool += LATE_CLASSES
    if i % 3 == 0:
        pool += [*UNICODE_LABELS, *INTEGER_LABELS]
    rng.shuffle(pool)
    return pool


def _scores(rng: random.Random, truth: str, pool: list[Any], tie: bool) -> dict[str, float]:
    names = sorted({truth, *(str(x) for x in rng.sample(pool, min(4, len(pool))))})
    scores = {name: round(rng.random(), 2) for name in names}
    if tie and len(names) >= 2:
        top = max(scores.values()) + 0.25
        for name in rng.sample(names, 2):
            scores[name] = top
    elif rng.random() < 0.6:
        scores[truth] = max(scores.values()) + 0.5  # mostly right
    return scores


def _prediction(rng: random.Random, model: str, truth: Any, pool: list[Any], i: int) -> Any:
    text = str(truth)
    if model == "model1":
        return _scores(rng, text, pool, tie=i % 5 == 0)
    if model == "model2":
        return text if rng.random() < 0.7 else str(rng.choice(pool))
    if model == "modèle-é":
        if i % 2:
            return _scores(rng, text, pool, tie=i % 7 == 0)
        return text if rng.random() < 0.5 else str(rng.choice(pool))
    if model == "模型":
        return _scores(rng, text, pool, tie=False)
    # int_model: integer labels as integers, integer-looking score keys, ties between them
    choice = truth if rng.random() < 0.5 else rng.choice(pool)
    if i % 4 == 0:
        return {"7": 0.5, "42": 0.5, str(choice): 0.4}
    return int(choice) if isinstance(choice, int) else str(choice)


def good_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` valid records exercising everything the contract allows (see module docstring)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        pool = _label_pool(rng, i, n)
        truth = pool[0]
        present = [m for m in MODELS if m in ("model1", "model2") or rng.random() < 0.6]
        rng.shuffle(present)
        record: dict[str, Any] = {
            "id": i if i % 4 == 1 else f"r-{seed}-{i:05d}",
            "ts": _ts_value(i, START_MS + i * STEP_MS),
            "label": truth,
            "predictions": {m: _prediction(rng, m, truth, pool, i) for m in present},
        }
        records.append({k: v for k, v in record.items() if v is not _DROP})
    return records


@dataclass(slots=True)
class Stream:
    """Lines to feed a job, what each malformed one must give, and fallback times."""

    name: str
    lines: list[bytes]
    bad: dict[int, BadLine] = field(default_factory=dict)

    @property
    def fallback_ts(self) -> list[int]:
        """A deterministic stand-in for arrival time, per line (for in-memory sources)."""
        return [START_MS + 7 + i * STEP_MS for i in range(len(self.lines))]

    def write(self, path: Path) -> Path:
        """The stream as a JSON-lines file (line ``i + 1`` holds ``lines[i]``)."""
        path.write_bytes(b"".join(line + b"\n" for line in self.lines))
        return path


def adversarial_stream(
    n_records: int = 240, seed: int = 1, bad_lines: Sequence[BadLine] = BAD_LINES
) -> Stream:
    """Good records with ``bad_lines`` (by default every kind) and blank lines spread through."""
    lines = [dumps(r) for r in good_records(n_records, seed)]
    stream = Stream(f"adversarial-{n_records}-{seed}", lines)
    if not bad_lines:
        return stream
    rng = random.Random(seed + 1000)
    extras: list[bytes | BadLine] = [*bad_lines, *BLANK_LINES]
    positions = sorted(rng.sample(range(n_records), len(extras)))
    rng.shuffle(extras)
    merged: list[bytes] = []
    bad: dict[int, BadLine] = {}
    cut = 0
    for pos, extra in zip(positions, extras, strict=True):
        merged.extend(lines[cut:pos])
        cut = pos
        if isinstance(extra, BadLine):
            bad[len(merged)] = extra
            merged.append(extra.raw)
        else:
            merged.append(extra)
    merged.extend(lines[cut:])
    return Stream(stream.name, merged, bad)


def many_labels_stream(n_records: int = 320, n_labels: int = 300, seed: int = 2) -> Stream:
    """More than 256 labels (past one byte per code), all new in the second half."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_records):
        k = rng.randrange(8) if i < n_records // 2 else rng.randrange(n_labels)
        truth = f"L{k:03d}"
        pred = truth if rng.random() < 0.5 else f"L{rng.randrange(n_labels):03d}"
        lines.append(
            dumps({"id": i, "ts": START_MS + i, "label": truth, "predictions": {"wide": pred}})
        )
    return Stream(f"many-labels-{n_labels}", lines)


def sample_stream() -> Stream:
    """The project's sample stream (`flows.demo.sample_lines`: 3 models, 2 labels, a drift)."""
    return Stream("sample", sample_lines())


def single_class_stream(n_records: int = 30) -> Stream:
    """Windows where truth and prediction are one class: MCC and kappa must be null."""
    lines = [
        dumps(
            {
                "id": i,
                "ts": START_MS + i,
                "label": "only",
                "predictions": {"perfect": "only", "always_b": "b" if i >= 20 else "only"},
            }
        )
        for i in range(n_records)
    ]
    return Stream("single-class", lines)


def time_skew_stream(
    n_records: int = 400, duration_ms: int = 2000, seed: int = 4, skewed: bool = True
) -> Stream:
    """Records whose event times test a time window of ``duration_ms``: equal times, gaps
    longer than the window, records slightly behind the newest time, exactly one duration
    behind it (outside), far behind (late on arrival), and ahead of the others (``skewed=False``
    keeps only the equal and forward times). Every record has a ``ts`` (epoch ms or RFC 3339),
    so no fallback time is needed."""
    rng = random.Random(seed)
    labels = ["a", "b", "c"]
    clock = START_MS
    lines = []
    for i in range(n_records):
        clock += rng.choice([0, 0, 1, 50, 250, duration_ms // 2, duration_ms + 1])
        roll = rng.random() if skewed else 0.0
        if roll < 0.65:
            ts = clock
        elif roll < 0.77:
            ts = clock - rng.randrange(1, duration_ms)  # behind, still inside when read
        elif roll < 0.85:
            ts = clock - duration_ms  # on the window's bound: outside
        elif roll < 0.93:
            ts = clock - 3 * duration_ms  # late on arrival
        else:
            ts = clock + rng.randrange(1, duration_ms)  # ahead: moves the window's end
        if i == n_records // 2:
            labels.append("late-label")
        truth = rng.choice(labels)
        predictions: dict[str, Any] = {
            "scored": {label: round(rng.random(), 2) for label in labels},
            "bare": truth if rng.random() < 0.7 else rng.choice(labels),
        }
        if rng.random() < 0.5:
            predictions["sometimes"] = rng.choice(labels)
        lines.append(
            dumps(
                {
                    "id": f"t{i}",
                    "ts": ts if i % 3 else rfc3339(ts, 60),
                    "label": truth,
                    "predictions": predictions,
                }
            )
        )
    return Stream(f"time-skew-{n_records}-{duration_ms}-{seed}", lines)
