"""Runs the real dataflow (`flows.confusion.build_flow`) in this process and reads its output.

Two ways, as Bytewax's own tests do: `run_batches` passes a `TestingSource` of `RawBatch` items
(which controls batch boundaries and fallback times) and catches the outputs in `TestingSink`s;
`run_file` runs the job as its variables configure it, file source and JSON-lines sinks (temp
files). `execute` takes any source and sinks: the recovery tests give it a `TestingSource` with
`TestingSource.ABORT` markers and keep the JSON-lines sinks, whose truncation on resume is part of
what they test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.inputs import Source
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.confusion import Sinks, build_flow
from flows.connectors.files import encode_json
from flows.parsing.batches import DeadLetter, RawBatch
from flows.settings import Settings, load_settings

Doc = dict[str, Any]
ORIGIN = "memory"


@dataclass(frozen=True, slots=True)
class FlowOutput:
    """What one run wrote."""

    documents: list[Doc]
    dead_letters: list[Doc]


def read_jsonl(path: Path) -> list[Doc]:
    """Every line of a JSON-lines file (none if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def job_env(
    tmp: Path,
    *,
    window_size: int,
    emit_every: int,
    weights: str = "",
    input_path: Path | None = None,
    batch_size: int | None = None,
    window_duration: str | None = None,
) -> dict[str, str]:
    """``CONFUSION_*`` variables of a quiet job writing into ``tmp``."""
    env = {
        "CONFUSION_SOURCE": "file" if input_path else "demo",
        "CONFUSION_OUTPUT": str(tmp / "documents.jsonl"),
        "CONFUSION_DEAD_LETTER_PATH": str(tmp / "dead-letters.jsonl"),
        "CONFUSION_WINDOW_SIZE": str(window_size),
        "CONFUSION_EMIT_EVERY": str(emit_every),
        "CONFUSION_PROGRESS": "off",
        "CONFUSION_SUMMARY": "false",
    }
    if input_path is not None:
        env["CONFUSION_INPUT"] = str(input_path)
    if weights:
        env["CONFUSION_ENSEMBLE_WEIGHTS"] = weights
    if batch_size is not None:
        env["CONFUSION_BATCH_SIZE"] = str(batch_size)
    if window_duration is not None:
        env["CONFUSION_WINDOW_KIND"] = "time"
        env["CONFUSION_WINDOW_DURATION"] = window_duration
    return env


def weights_text(weights: Mapping[str, float]) -> str:
    return ",".join(f"{model}={weight}" for model, weight in weights.items())


def raw_batches(
    lines: Sequence[bytes], fallback_ts: Sequence[int], sizes: Sequence[int] = (1, 3, 17, 50)
) -> list[RawBatch]:
    """The lines as batches of cycling sizes; blank lines are left out, as the file source does.

    Positions are 1-based line numbers, like the file source's.
    """
    batches: list[RawBatch] = []
    start = 0
    turn = 0
    while start < len(lines):
        stop = min(len(lines), start + sizes[turn % len(sizes)])
        keep = [i for i in range(start, stop) if lines[i].strip(b" \t\r\n")]
        batches.append(
            RawBatch(
                [lines[i] for i in keep],
                [fallback_ts[i] for i in keep],
                ORIGIN,
                [i + 1 for i in keep],
            )
        )
        start, turn = stop, turn + 1
    return batches


def execute(
    settings: Settings,
    *,
    workers: int = 1,
    source: Source[RawBatch] | None = None,
    sinks: Sinks | None = None,
    recovery_dir: Path | None = None,
    epoch: timedelta | None = None,
) -> None:
    """Build the job's dataflow and run it to completion with ``workers`` workers.

    ``source`` and ``sinks`` default to the ones ``settings`` names.
    """
    flow = build_flow(settings, source=source, sinks=sinks, recovery_dir=recovery_dir or "off")
    recovery = (
        RecoveryConfig(str(recovery_dir))  # type: ignore[no-untyped-call]
        if recovery_dir is not None
        else None
    )
    if workers == 1:
        run_main(
            flow,
            epoch_interval=epoch,  # type: ignore[no-untyped-call]
            recovery_config=recovery,
        )
    else:
        cluster_main(
            flow,
            [],
            0,
            epoch_interval=epoch,  # type: ignore[no-untyped-call]
            recovery_config=recovery,
            worker_count_per_proc=workers,
        )


def output_of(settings: Settings) -> FlowOutput:
    return FlowOutput(read_jsonl(settings.output), read_jsonl(settings.dead_letter_path))


def run_batches(
    lines: Sequence[bytes],
    fallback_ts: Sequence[int],
    tmp: Path,
    *,
    window_size: int,
    emit_every: int,
    workers: int = 1,
    weights: str = "",
    sizes: Sequence[int] = (1, 3, 17, 50),
    window_duration: str | None = None,
) -> FlowOutput:
    """Run the job on ``lines`` fed as `RawBatch` items by a `TestingSource`, its outputs
    caught by `TestingSink`s. Documents pass through the JSON encoding the job's sinks use.

    ``window_duration`` switches to time windows of that duration.
    """
    settings = load_settings(
        job_env(
            tmp,
            window_size=window_size,
            emit_every=emit_every,
            weights=weights,
            window_duration=window_duration,
        )
    )
    documents: list[tuple[str, Doc]] = []
    letters: list[tuple[str, DeadLetter]] = []
    execute(
        settings,
        workers=workers,
        source=TestingSource(raw_batches(lines, fallback_ts, sizes)),
        sinks=Sinks(TestingSink(documents), TestingSink(letters)),
    )
    return FlowOutput(
        [json.loads(encode_json(doc)) for _, doc in documents],
        [letter.to_json() for _, letter in letters],
    )


def run_file(
    lines: Sequence[bytes],
    tmp: Path,
    *,
    window_size: int,
    emit_every: int,
    workers: int = 1,
    weights: str = "",
    batch_size: int | None = None,
    newline: bytes = b"\n",
    final_newline: bool = True,
    window_duration: str | None = None,
) -> FlowOutput:
    """Run the job as configured by its variables alone: its own file source on ``lines``
    written to a JSON-lines file, its own JSON-lines sinks."""
    path = tmp / "input.jsonl"
    text = newline.join(lines)
    path.write_bytes(text + newline if final_newline else text)
    settings = load_settings(
        job_env(
            tmp,
            window_size=window_size,
            emit_every=emit_every,
            weights=weights,
            input_path=path,
            batch_size=batch_size,
            window_duration=window_duration,
        )
    )
    execute(settings, workers=workers)
    return output_of(settings)
