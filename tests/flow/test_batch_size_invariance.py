"""Batch size is invisible: batch sizes 1, 7 and 1,000 give identical documents and dead letters.

This is the invariant every window kind must keep (issue 10): `WINDOW_CONFIGS` lists the window
configurations it is checked on, one per kind and shape; a new window kind adds its entries there
and passes this test, nothing else to write.

The pipeline is the job's own core, fed the way the job feeds it: the file source
(`JsonLinesSource`, blank-line handling included) cuts a real file into batches, `parse_batch`
parses each, every model's columns go to that model's `ModelWindowLogic`, and documents and dead
letters are collected in order per model. Only ``emitted_at`` may differ (it is the wall clock;
here a fixed clock, and it is removed anyway). Records without ``ts`` are left out of the
streams: they take their batch's arrival time, which depends on batching by definition.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.connectors.files import JsonLinesSource
from flows.limits import MAX_CLASSES, Limits
from flows.parsing.batches import DEFAULT_LIMITS, DeadLetter, parse_batch
from flows.windows.base import WindowPolicy
from flows.windows.count import CountPolicy
from flows.windows.model_state import ModelWindowLogic
from flows.windows.time import TimePolicy
from tests.streams import dumps

T0 = 1_795_341_600_000
BATCH_SIZES = (1, 7, 1000)


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """One window configuration the invariant is checked on (and the parse limits with it)."""

    name: str
    policy: WindowPolicy[Any, Any]
    emit_every: int
    max_classes: int = MAX_CLASSES
    limits: Limits = DEFAULT_LIMITS


WINDOW_CONFIGS = [
    WindowConfig("count-5-emit-3", CountPolicy(5), 3),
    WindowConfig("count-40-emit-1", CountPolicy(40), 1),
    WindowConfig("count-3-emit-7-classes-4", CountPolicy(3), 7, 4, Limits(models=2)),
    WindowConfig("time-300ms-emit-3", TimePolicy(300), 3),
    WindowConfig("time-1s-emit-1", TimePolicy(1000), 1),
    WindowConfig("time-300ms-emit-5-classes-3", TimePolicy(300), 5, 3, Limits(record_bytes=400)),
]
DURATIONS = (300, 1000)  # the time windows' durations, for "exactly on the boundary" records

LABELS = ("a", "b", "c", "d", "e")
MALFORMED = (
    b"{",
    b"\x0b",
    b"\x0c",
    b" \t",
    b"",
    b"[1, 2]",
    b"null",
    b'{"id": true, "label": "a", "ts": 0, "predictions": {"m1": "a"}}',
    b'{"id": "x", "ts": 0, "predictions": {"m1": "a"}}',
    b'{"id": "y", "label": "a", "ts": "2026-W47-7T10:00:00+00:00", "predictions": {"m1": "a"}}',
    b'{"id": "z", "label": "a", "ts": 0, "predictions": {"m1": {"a": "high"}, "m2": "b"}}',
    b'{"id": "u", "label": "\xff", "ts": 0, "predictions": {"m1": "a"}}',
    b'{"id": "d", "label": "a", "ts": 0, "predictions": {"m1": "a"}, "x": '
    + b"[" * 70
    + b"]" * 70
    + b"}",
    b'{"id": "w", "label": "a", "ts": 0, "predictions": {"m1": "a", "m2": "a", "m3": "a"}}',
    b'{"id": "p1", "label": "a", "ts": 0, "predictions": {"m1": "a"}} {"id": "p2"}',
    b'{"id": "s", "label": "a", "ts": 0, "note": "'
    + b"x" * 500
    + b'", "predictions": {"m1": "a"}}',
)


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Lines of good records whose times step, repeat, jump ahead, fall late or sit exactly on
    ``newest - duration``, mixed with malformed lines."""
    lines: list[bytes] = []
    clock = newest = T0
    for i in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(["step", "equal", "ahead", "late", "boundary", "bad"]))
        if kind == "bad":
            lines.append(draw(st.sampled_from(MALFORMED)))
            continue
        if kind == "step":
            clock += draw(st.integers(0, 150))
        elif kind == "ahead":
            clock += draw(st.integers(500, 3000))
        elif kind == "late":
            clock = newest - draw(st.sampled_from(DURATIONS)) - draw(st.integers(1, 400))
        elif kind == "boundary":
            clock = newest - draw(st.sampled_from(DURATIONS))
        newest = max(newest, clock)
        truth = draw(st.sampled_from(LABELS))
        preds: dict[str, Any] = {"m1": draw(st.sampled_from(LABELS))}
        if draw(st.booleans()):
            preds["m2"] = {label: draw(st.integers(0, 3)) / 4 for label in LABELS[:3]}
        lines.append(dumps({"id": f"r{i}", "ts": clock, "label": truth, "predictions": preds}))
    return lines


def run(
    lines: list[bytes], config: WindowConfig, batch_size: int
) -> tuple[dict[tuple[str, int], dict[str, Any]], list[tuple[Any, ...]]]:
    """Documents by (model, seq) without ``emitted_at``, and dead letters in a stable order."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        part = JsonLinesSource(path, batch_size).build_part("read", str(path), None)
        logics: dict[str, ModelWindowLogic] = {}
        out: list[Any] = []
        letters: list[DeadLetter] = []
        try:
            while True:
                try:
                    batches = part.next_batch()
                except StopIteration:
                    break
                for batch in batches:
                    parsed = parse_batch(batch, None, config.limits)
                    letters += parsed.dead
                    for model, cols in parsed.by_model.items():
                        logic = logics.setdefault(
                            model,
                            ModelWindowLogic(
                                config.policy,
                                config.emit_every,
                                None,
                                clock=lambda: 0,
                                max_classes=config.max_classes,
                            ),
                        )
                        out += logic.on_batch([cols])[0]
        finally:
            part.close()
        for logic in logics.values():
            out += logic.on_eof()[0]
    docs: dict[tuple[str, int], dict[str, Any]] = {}
    for item in out:
        if isinstance(item, DeadLetter):
            letters.append(item)
        else:
            key = (item["model"], item["seq"])
            assert key not in docs, f"two documents for {key}"
            docs[key] = {k: v for k, v in item.items() if k != "emitted_at"}
    dead = sorted(
        (d.position, d.model or "", d.reason, d.raw, Path(d.origin).name) for d in letters
    )
    return docs, dead


@pytest.mark.parametrize("config", WINDOW_CONFIGS, ids=[c.name for c in WINDOW_CONFIGS])
@given(lines=streams())
def test_batch_sizes_1_7_and_1000_give_identical_output(
    config: WindowConfig, lines: list[bytes]
) -> None:
    first = run(lines, config, BATCH_SIZES[0])
    for size in BATCH_SIZES[1:]:
        other = run(lines, config, size)
        assert other[1] == first[1], f"dead letters differ at batch size {size}"
        assert other[0].keys() == first[0].keys(), f"documents differ at batch size {size}"
        for key, doc in first[0].items():
            assert other[0][key] == doc, f"document {key} differs at batch size {size}"
