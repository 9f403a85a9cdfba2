"""Delayed labels through the real dataflow, against the independent join oracle.

`tests.join_reference` joins the halves by the README's rules and hands back the combined
records in join order; `tests.reference` recomputes the documents from those. The job must
give the same windows, the same join counts and the same dead letters.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource

from flows.confusion import Sinks
from flows.connectors.files import encode_json
from flows.demo import sample_lines
from flows.parsing.batches import DeadLetter, RawBatch
from flows.settings import load_settings
from tests.flow.runner import execute, job_env, read_jsonl
from tests.join_reference import JoinOutcome, join_oracle, nearest_rank, split
from tests.reference import Doc, assert_documents_match, expected_run

WINDOW, EVERY = 200, 50
T0 = 1_795_341_600_000


def records(n: int = 1200) -> list[bytes]:
    """Sample records with integer times (the oracle reads epoch ms)."""
    out = []
    for k, line in enumerate(sample_lines(total=n)):
        record = json.loads(line)
        record["ts"] = T0 + 250 * k
        out.append(json.dumps(record).encode())
    return out


def batches(events: Sequence[tuple[str, bytes]], sizes: Sequence[int]) -> list[RawBatch]:
    """Consecutive events of one origin as batches of cycling sizes."""
    out: list[RawBatch] = []
    k = turn = 0
    while k < len(events):
        origin = events[k][0]
        stop = k
        while stop < len(events) and stop - k < sizes[turn % len(sizes)]:
            if events[stop][0] != origin:
                break
            stop += 1
        chunk = events[k:stop]
        out.append(RawBatch([e[1] for e in chunk], [0] * len(chunk), origin, list(range(k, stop))))
        k, turn = stop, turn + 1
    return out


def run_join(
    tmp: Path,
    events: Sequence[tuple[str, bytes]],
    *,
    ttl: str = "7d",
    sizes: Sequence[int] = (1, 7, 64),
    workers: int = 1,
    shards: int = 1,
    window: int = WINDOW,
    duration: str | None = None,
) -> tuple[list[Doc], list[Doc]]:
    env = job_env(tmp, window_size=window, emit_every=EVERY, window_duration=duration)
    env["CONFUSION_LABEL_TTL"] = ttl
    env["CONFUSION_JOIN_SHARDS"] = str(shards)
    documents: list[tuple[str, Any]] = []
    letters: list[tuple[str, DeadLetter]] = []
    execute(
        load_settings(env),
        workers=workers,
        source=TestingSource(batches(events, sizes)),
        sinks=Sinks(TestingSink(documents), TestingSink(letters)),
    )
    return (
        [json.loads(encode_json(doc)) for _, doc in documents],
        [letter.to_json() for _, letter in letters],
    )


def expected_docs(outcome: JoinOutcome) -> dict[tuple[str, int], Doc]:
    return expected_run(outcome.joined, window_size=WINDOW, emit_every=EVERY).documents


def check_join_fields(docs: list[Doc], outcome: JoinOutcome) -> None:
    """The last document of each model: counts as the oracle's, latency of its window."""
    last: dict[str, Doc] = {}
    for doc in docs:
        assert doc["join"]["joined"] == doc["seq"]  # a document part way through a batch too
        if doc["seq"] >= last.get(doc["model"], {"seq": 0})["seq"]:
            last[doc["model"]] = doc
    for model, doc in last.items():
        join = doc["join"]
        assert join["seen"] == outcome.seen.get(model, 0)
        assert join["expired"] == outcome.expired.get(model, 0)
        assert join["waiting"] == outcome.waiting.get(model, 0)
        assert join["joined"] == len(outcome.latency[model]) == doc["seq"]
        held = outcome.latency[model][-doc["window"]["count"] :]
        assert join["latency_ms"] == {
            "count": len(held),
            "p50": nearest_rank(held, 0.5),
            "p95": nearest_rank(held, 0.95),
            "max": max(held),
        }


def without_join(docs: list[Doc]) -> list[Doc]:
    return [{k: v for k, v in d.items() if k != "join"} for d in docs]


def letter_kinds(letters: list[Doc]) -> Counter[tuple[str, Any]]:
    kinds = Counter()
    for letter in letters:
        reason, raw = letter["reason"], json.loads(letter["raw"])
        kind = (
            "orphan"
            if "has no prediction" in reason
            else "second-label"
            if reason.startswith("second label")
            else "second-prediction"
        )
        assert repr(raw["id"]) in reason, reason
        kinds[(kind, raw["id"])] += 1
    return kinds


@pytest.mark.parametrize("workers", [1, 2])
def test_split_streams_joined_give_the_combined_windows(tmp_path: Path, workers: int) -> None:
    """All predictions, then all labels in the same order: the windows of the combined run."""
    lines = records()
    halves = [split(line) for line in lines]
    events = [("predictions", p) for p, _ in halves] + [("labels", lab) for _, lab in halves]
    docs, letters = run_join(tmp_path, events, workers=workers)
    outcome = join_oracle(events, 7 * 86_400_000)
    assert letters == []
    combined = expected_run(lines, window_size=WINDOW, emit_every=EVERY).documents
    assert_documents_match(without_join(docs), combined)
    assert_documents_match(without_join(docs), expected_docs(outcome))
    check_join_fields(docs, outcome)
    assert any("scores" in d for d in docs)  # joined records keep their score maps


def delayed_events(lines: list[bytes]) -> list[tuple[str, bytes]]:
    """Labels late by varying delays, some before their prediction, a share never labeled,
    in time order on two origins."""
    events: list[tuple[int, str, bytes]] = []
    for k, line in enumerate(lines):
        p, lab = split(line)
        events.append((T0 + 250 * k, "predictions", p))
        if k % 9 == 0:
            continue  # never labeled
        delay = -500 if k % 7 == 0 else (k * 7919) % 40_000
        label = json.loads(lab)
        label["ts"] = T0 + 250 * k + delay
        events.append((label["ts"], "labels", json.dumps(label).encode()))
    events.sort(key=lambda e: e[0])
    return [(origin, line) for _, origin, line in events]


def test_labels_interleaved_with_delays_and_before_their_predictions(tmp_path: Path) -> None:
    """Labels late by varying delays, some before their prediction, a share never labeled;
    two origins, so the clock is the older of their newest times."""
    ordered = delayed_events(records())
    docs, letters = run_join(tmp_path, ordered, ttl="30s")
    outcome = join_oracle(ordered, 30_000)
    assert sum(outcome.expired.values()) > 0
    assert_documents_match(without_join(docs), expected_docs(outcome))
    check_join_fields(docs, outcome)
    assert letter_kinds(letters) == Counter(outcome.dead)


@pytest.mark.parametrize(("shards", "workers"), [(3, 1), (4, 2)])
def test_join_shards_keep_the_labels_read_order(tmp_path: Path, shards: int, workers: int) -> None:
    """With several shards each joins its part of a batch, and the parts are merged back into
    read order: the count windows are the one-shard oracle's, document for document."""
    ordered = delayed_events(records())
    docs, letters = run_join(
        tmp_path, ordered, ttl="30s", shards=shards, workers=workers, sizes=(1, 7, 64, 300)
    )
    outcome = join_oracle(ordered, 30_000)
    assert_documents_match(without_join(docs), expected_docs(outcome))
    check_join_fields(docs, outcome)
    assert letter_kinds(letters) == Counter(outcome.dead)


def test_expiry_at_the_boundary(tmp_path: Path) -> None:
    """A label at exactly ts + ttl on the clock joins; one a millisecond later does not."""
    pred = {"predictions": {"m": "A"}}
    events = [
        ("s", json.dumps({"id": "a", "ts": 0, **pred}).encode()),
        ("s", json.dumps({"id": "b", "ts": 1, **pred}).encode()),
        ("s", json.dumps({"id": "x", "ts": 1000, **pred}).encode()),  # clock 1000
        ("s", json.dumps({"id": "a", "ts": 1000, "label": "A"}).encode()),  # joins (0 + 1000)
        ("s", json.dumps({"id": "y", "ts": 1002, **pred}).encode()),  # clock 1002: b expires
        ("s", json.dumps({"id": "b", "ts": 1002, "label": "B"}).encode()),  # waits, orphan
        ("s", json.dumps({"id": "z", "ts": 5000, **pred}).encode()),  # orphan b expires
    ]
    for sizes in ((1,), (7,)):
        docs, letters = run_join(tmp_path / str(sizes[0]), events, ttl="1s", sizes=sizes)
        outcome = join_oracle(events, 1000)
        assert outcome.joined and outcome.expired == {"m": 3}  # b, x, y
        assert_documents_match(without_join(docs), expected_docs(outcome))
        check_join_fields(docs, outcome)
        assert letter_kinds(letters) == Counter(outcome.dead) == Counter({("orphan", "b"): 1})
        assert "CONFUSION_LABEL_TTL=1s" in letters[0]["reason"]


def test_duplicates_go_to_the_dead_letters_with_their_reason(tmp_path: Path) -> None:
    pred = {"predictions": {"m": {"A": 0.6, "B": 0.4}}}
    events = [
        ("s", json.dumps({"id": 1, "ts": 10, **pred}).encode()),
        ("s", json.dumps({"id": 1, "ts": 11, **pred}).encode()),  # second prediction, waiting
        ("s", json.dumps({"id": "1", "ts": 12, "label": "A"}).encode()),  # another id ("1")
        ("s", json.dumps({"id": "1", "ts": 13, "label": "B"}).encode()),  # second waiting label
        ("s", json.dumps({"id": 1, "ts": 14, "label": "B"}).encode()),  # joins 1
        ("s", json.dumps({"id": 1, "ts": 15, "label": "A"}).encode()),  # second label, joined
        ("s", json.dumps({"id": 1, "ts": 16, **pred}).encode()),  # prediction already joined
        ("s", json.dumps({"id": "1", "ts": 17, **pred}).encode()),  # joins "1" (label first)
    ]
    docs, letters = run_join(tmp_path, events, sizes=(3,))
    outcome = join_oracle(events, 7 * 86_400_000)
    assert len(outcome.joined) == 2
    assert_documents_match(without_join(docs), expected_docs(outcome))
    check_join_fields(docs, outcome)
    assert letter_kinds(letters) == Counter(outcome.dead)
    assert len(letters) == 4


def test_join_shards_and_two_workers_count_every_record_once(tmp_path: Path) -> None:
    """Every label before its prediction, 3 shards, 2 workers: each record joined once."""
    lines = records(900)
    halves = [split(line) for line in lines]
    events = [("labels", lab) for _, lab in halves] + [("predictions", p) for p, _ in halves]
    docs, letters = run_join(tmp_path, events, workers=2, shards=3)
    assert letters == []
    outcome = join_oracle(events, 7 * 86_400_000)
    assert_documents_match(without_join(docs), expected_docs(outcome))
    check_join_fields(docs, outcome)


def test_file_source_with_a_labels_file(tmp_path: Path) -> None:
    """CONFUSION_INPUT of predictions and CONFUSION_LABELS_INPUT of labels, read side by side."""
    lines = records(600)
    halves = [split(line) for line in lines]
    (tmp_path / "p.jsonl").write_bytes(b"".join(p + b"\n" for p, _ in halves))
    (tmp_path / "l.jsonl").write_bytes(b"".join(lab + b"\n" for _, lab in halves))
    env = job_env(tmp_path, window_size=WINDOW, emit_every=EVERY, input_path=tmp_path / "p.jsonl")
    env["CONFUSION_LABELS_INPUT"] = str(tmp_path / "l.jsonl")
    settings = load_settings(env)
    execute(settings)
    docs = read_jsonl(settings.output)
    assert read_jsonl(settings.dead_letter_path) == []
    # Whichever file runs ahead, labels resolve predictions in the records' order.
    combined = expected_run(lines, window_size=WINDOW, emit_every=EVERY).documents
    assert_documents_match(without_join(docs), combined)


def test_without_the_join_a_record_without_label_is_refused_as_before(tmp_path: Path) -> None:
    p, lab = split(records(1)[0])
    env = job_env(tmp_path, window_size=WINDOW, emit_every=EVERY)
    documents: list[tuple[str, Any]] = []
    letters: list[tuple[str, DeadLetter]] = []
    execute(
        load_settings(env),
        source=TestingSource([RawBatch([p, lab], [0, 0], "s", [1, 2])]),
        sinks=Sinks(TestingSink(documents), TestingSink(letters)),
    )
    assert documents == []
    assert [letter.reason for _, letter in letters] == ["missing 'label'", "missing 'predictions'"]


def test_time_windows_place_joined_records_at_the_prediction_time(tmp_path: Path) -> None:
    lines = records()
    halves = [split(line) for line in lines]
    events = [("predictions", p) for p, _ in halves] + [("labels", lab) for _, lab in halves]
    docs, letters = run_join(tmp_path, events, duration="30s")
    assert letters == []
    combined = expected_run(
        lines, window_size=WINDOW, emit_every=EVERY, window_duration_ms=30_000
    ).documents
    assert_documents_match(without_join(docs), combined)
