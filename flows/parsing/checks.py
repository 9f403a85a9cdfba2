"""Record-by-record validation: the input schema, with the reason for every refusal.

`parse_record` judges one decoded record and each of its model entries; a refusal raises
`RecordError`, whose message is the dead letter's reason. The batch parser
(`flows.parsing.batches`) sends here every record the fast path does not accept outright.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from flows.limits import reached
from flows.parsing.ensemble import Ensemble, NoVerdict
from flows.parsing.fast_path import MAX_DEPTH, too_deep
from flows.parsing.labels import best_label

# Epoch milliseconds that datetime can represent (years 1..9999).
MIN_MS = -62_135_596_800_000


MAX_MS = 253_402_300_799_999


ID_MIN, ID_MAX = -(2**63), 2**63 - 1  # integer ids must fit Elasticsearch's long


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# RFC 3339 section 5.6 date-time; T and Z may be lower case and a space may separate date and
# time (its note). No week dates, basic format, comma fractions or +0000 offsets.
_RFC3339_FORM = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


_RFC3339 = re.compile(_RFC3339_FORM + r"\Z")


RFC3339_LINES = re.compile(f"{_RFC3339_FORM}(?:\n{_RFC3339_FORM})*")


_ONE_MS = timedelta(milliseconds=1)


# The truth of a prediction half (a record without ``label``) until its label arrives: a lone
# UTF-16 surrogate, which no accepted label can hold (such text is refused, see _check_text).
PENDING = "\ud800"


class RecordError(ValueError):
    """Why a record (or one model entry) is refused; the message is the dead-letter reason."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(raw: bytes, max_bytes: int | None = None) -> tuple[Any, bool]:
    """Decode one JSON document; also say whether its text must be checked for surrogates.

    msgspec decodes first (integers of any size stay exact). What it refuses the stdlib decodes
    again, because some of it is valid JSON the contract judges more finely: a score of 1e400 is
    a refused entry, not a broken record. The stdlib lets unpaired UTF-16 surrogate escapes
    through, which no sink can encode, so those documents need `parse_record`'s text checks.
    Size and nesting are checked on the bytes first, so neither decoder can exhaust memory or
    the stack.
    """
    if max_bytes is not None and len(raw) > max_bytes:
        raise RecordError(
            reached(
                "CONFUSION_MAX_RECORD_BYTES",
                f"record is longer than CONFUSION_MAX_RECORD_BYTES={max_bytes} bytes",
            )
        )
    if not raw:  # said plainly: "not valid JSON: Input data was truncated" misleads
        raise RecordError("empty value (no bytes; a Kafka tombstone, a null value, reads as one)")
    if too_deep(raw):
        raise RecordError(f"arrays and objects nest deeper than {MAX_DEPTH} levels")
    try:
        return msgspec.json.decode(raw), False
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        first = str(exc)
        # Only a number out of range (ValidationError) or a \u escape (a lone surrogate) can
        # be JSON the stdlib reads; anything else it refuses too, so do not pay for asking it.
        retry = isinstance(exc, msgspec.ValidationError) or b"\\u" in raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not retry:
        raise RecordError(f"not valid JSON: {first}")
    try:
        return json.loads(text, parse_constant=_reject_constant), True
    except (ValueError, RecursionError):
        raise RecordError(f"not valid JSON: {first}") from None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text(value: str, what: str) -> None:
    if _has_surrogate(value):
        raise RecordError(f"{what} holds an unpaired UTF-16 surrogate escape")


def label_of(value: Any, what: str) -> str:
    """A label is a non-empty string; an integer stands for its decimal string."""
    if type(value) is str:
        if value:
            return value
        raise RecordError(f"{what} is an empty string")
    if type(value) is int:
        return str(value)
    raise RecordError(f"{what} must be a non-empty string or an integer, got {_json_type(value)}")


def timestamp_ms(value: Any, form_checked: bool = False) -> int:
    """Epoch milliseconds from an RFC 3339 string or an integer of epoch milliseconds.

    ``form_checked``: the caller has already matched the string against the RFC 3339 form.
    """
    if type(value) is int:
        if MIN_MS <= value <= MAX_MS:
            return value
        raise RecordError(f"'ts' {value} is out of range for epoch milliseconds")
    if type(value) is not str:
        raise RecordError(
            "'ts' must be an RFC 3339 string or epoch milliseconds (integer), "
            f"got {_json_type(value)}"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:  # RFC 3339 also allows a lowercase "t" and "z"
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            raise RecordError(f"'ts' is not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None or len(value) < 20:
        raise RecordError(f"'ts' needs a date, a time and a UTC offset (RFC 3339): {value!r}")
    if not form_checked and _RFC3339.match(value) is None:  # fromisoformat takes other forms
        raise RecordError(
            f"'ts' is ISO 8601 but not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.frac] and "
            f"Z or +HH:MM): {value!r}"
        )
    ms: int = (parsed - _EPOCH) // _ONE_MS  # exact integer arithmetic; sub-ms digits floored
    if not MIN_MS <= ms <= MAX_MS:
        raise RecordError(
            f"'ts' {value!r} is out of range: in UTC it falls outside years 1 to 9999"
        )
    return ms


def scored_prediction(scores: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    """The label with the highest score, ties going to the label that sorts first.

    Returns the label and the validated scores (needed by the ensemble).
    """
    if not scores:
        raise RecordError("empty score map")
    checked: dict[str, float] = {}
    for label, score in scores.items():
        if not label:
            raise RecordError("score map has an empty label")
        if type(score) is not float:
            if type(score) is int:
                try:
                    score = float(score)
                except OverflowError:
                    raise RecordError(f"score of {label!r} is not a finite number") from None
            else:
                raise RecordError(f"score of {label!r} is not a number: {score!r}")
        if not math.isfinite(score):
            raise RecordError(f"score of {label!r} is not a finite number: {score!r}")
        checked[label] = score
    return best_label(checked), checked


def entry_prediction(entry: Any) -> tuple[str, dict[str, float] | None]:
    """The predicted label of one model entry, and its scores when it has a score map."""
    if type(entry) is str:
        if entry:
            return entry, None
        raise RecordError("predicted label is an empty string")
    if type(entry) is dict:
        return scored_prediction(entry)
    if type(entry) is int:
        return str(entry), None
    raise RecordError(
        "prediction must be a label (string or integer) or a map of label to "
        f"score, got {_json_type(entry)}"
    )


@dataclass(frozen=True, slots=True)
class Record:
    """One valid record, with its valid model entries (for the flow tests and the tools)."""

    id: str | int
    ts: int | None
    label: str
    predictions: dict[str, str]
    entry_errors: dict[str, str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # models with score maps


def parse_record(
    obj: Any,
    ensemble: Ensemble | None = None,
    check_text: bool = False,
    max_models: int | None = None,
    join: bool = False,
) -> Record:
    """Validate one decoded record; raise RecordError if the record as a whole is refused.

    ``check_text`` asks for the surrogate checks `decode` says the document needs;
    ``max_models`` is CONFUSION_MAX_MODELS. With ``join`` (delayed labels), a record without
    ``label`` is a prediction half: its label is `PENDING`.
    """
    if type(obj) is not dict:
        raise RecordError(f"record must be a JSON object, got {_json_type(obj)}")
    if "id" not in obj:
        raise RecordError("missing 'id'")
    rid = obj["id"]
    if not ((type(rid) is str and rid) or type(rid) is int):
        raise RecordError(f"'id' must be a non-empty string or an integer, got {_json_type(rid)}")
    if type(rid) is int and not ID_MIN <= rid <= ID_MAX:
        raise RecordError("'id' is an integer that does not fit in 64 bits")
    if check_text and type(rid) is str:
        _check_text(rid, "'id'")
    if "label" not in obj and join:
        label = PENDING
    elif "label" not in obj:
        raise RecordError("missing 'label'")
    else:
        label = label_of(obj["label"], "'label'")
    if check_text and label is not PENDING:
        _check_text(label, "'label'")
    raw_ts = obj.get("ts")
    ts = None if raw_ts is None else timestamp_ms(raw_ts)
    if "predictions" not in obj:
        raise RecordError("missing 'predictions'")
    entries = obj["predictions"]
    if type(entries) is not dict:
        raise RecordError(
            f"'predictions' must be an object of model to prediction, got {_json_type(entries)}"
        )
    if not entries:
        raise RecordError("'predictions' is empty")
    if max_models is not None and len(entries) > max_models:
        raise RecordError(
            reached(
                "CONFUSION_MAX_MODELS",
                f"record has {len(entries)} model entries, more than "
                f"CONFUSION_MAX_MODELS={max_models}",
            )
        )
    preds: dict[str, str] = {}
    errors: dict[str, str] = {}
    scored: list[tuple[str, str, dict[str, float] | None]] = []
    for model, entry in entries.items():
        try:
            if not model:
                raise RecordError("model name is empty")
            if ensemble is not None and model == ensemble.name:
                raise RecordError(
                    f"model name {model!r} is reserved for the ensemble (CONFUSION_ENSEMBLE_NAME)"
                )
            pred, scores = entry_prediction(entry)
            if check_text:
                _check_text(model, "model name")
                for text in scores or (pred,):
                    _check_text(text, "predicted label")
        except RecordError as exc:
            errors[model] = f"model {model!r}: {exc}"
            continue
        preds[model] = pred
        scored.append((model, pred, scores))
    if not preds:
        raise RecordError("no valid model entry: " + "; ".join(errors.values()))
    maps = {model: scores for model, _, scores in scored if scores is not None}
    if ensemble is not None:
        try:
            combined = ensemble.vote(scored)
        except NoVerdict as exc:
            errors[ensemble.name] = f"model {ensemble.name!r}: {exc}"
            combined = None
        if combined is not None:
            preds[ensemble.name] = combined[0]
            if combined[1] is not None:
                maps[ensemble.name] = combined[1]
    return Record(rid, ts, label, preds, errors, maps)


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """A label half: the true class of the prediction with the same ``id``, arriving later."""

    id: str | int
    ts: int | None
    label: str


def parse_label_record(obj: dict[str, Any], check_text: bool = False) -> LabelRecord:
    """Validate a label half ``{"id", "label", "ts"?}`` (a record without ``predictions``)."""
    rid = obj.get("id")
    if "id" not in obj:
        raise RecordError("missing 'id'")
    if not ((type(rid) is str and rid) or type(rid) is int):
        raise RecordError(f"'id' must be a non-empty string or an integer, got {_json_type(rid)}")
    if type(rid) is int and not ID_MIN <= rid <= ID_MAX:
        raise RecordError("'id' is an integer that does not fit in 64 bits")
    label = label_of(obj["label"], "'label'")
    if check_text:
        if type(rid) is str:
            _check_text(rid, "'id'")
        _check_text(label, "'label'")
    raw_ts = obj.get("ts")
    return LabelRecord(rid, None if raw_ts is None else timestamp_ms(raw_ts), label)
