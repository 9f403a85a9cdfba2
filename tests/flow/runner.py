"""Runs the real dataflow (`flows.confusion.build_flow`) in this process and reads its output.

The documents and dead letters always go through the job's own JSON-lines sinks (temp files), so
the exactly-once truncation on resume is part of what is tested. Records come either from the
job's file source (``CONFUSION_SOURCE=file``) or from a `TestingSource` of `RawBatch` items, which
controls batch boundaries and fallback times and can hold `TestingSource.ABORT` markers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSource, cluster_main, run_main

from flows.records import RawBatch
from flows.settings import Settings, load_settings
from flows.telemetry import Progress

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


def job_env(tmp: Path, *, window_size: int, emit_every: int, weights: str = "",
            input_path: Path | None = None, batch_size: int | None = None) -> dict[str, str]:
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
    return env


def weights_text(weights: Mapping[str, float]) -> str:
    return ",".join(f"{model}={weight}" for model, weight in weights.items())


def raw_batches(lines: Sequence[bytes], fallback_ts: Sequence[int],
                sizes: Sequence[int] = (1, 3, 17, 50)) -> list[RawBatch]:
    """The lines as batches of cycling sizes; blank lines are left out, as the file source does.

    Positions are 1-based line numbers, like the file source's.
    """
    batches: list[RawBatch] = []
    start = 0
    turn = 0
    while start < len(lines):
        stop = min(len(lines), start + sizes[turn % len(sizes)])
        keep = [i for i in range(start, stop) if lines[i].strip(b" \t\r\n")]
        batches.append(RawBatch([lines[i] for i in keep], [fallback_ts[i] for i in keep],
                                ORIGIN, [i + 1 for i in keep]))
        start, turn = stop, turn + 1
    return batches


@contextmanager
def _source_swapped(source: TestingSource[RawBatch] | None) -> Iterator[None]:
    """Make `build_flow` read ``source`` instead of the one its settings name."""
    import flows.confusion as confusion

    if source is None:
        yield
        return
    namespace = vars(confusion)  # where build_flow looks the factory up
    original = namespace["make_source"]
    namespace["make_source"] = lambda settings, heartbeat: source
    try:
        yield
    finally:
        namespace["make_source"] = original


def execute(settings: Settings, *, workers: int = 1,
            source: TestingSource[RawBatch] | None = None, recovery_dir: Path | None = None,
            epoch: timedelta | None = None) -> None:
    """Build the job's dataflow and run it to completion with ``workers`` workers."""
    import flows.confusion as confusion

    with _source_swapped(source):
        flow = confusion.build_flow(settings, Progress("off"))
    recovery = (RecoveryConfig(str(recovery_dir))  # type: ignore[no-untyped-call]
                if recovery_dir is not None else None)
    if workers == 1:
        run_main(flow, epoch_interval=epoch,  # type: ignore[no-untyped-call]
                 recovery_config=recovery)
    else:
        cluster_main(flow, [], 0, epoch_interval=epoch,  # type: ignore[no-untyped-call]
                     recovery_config=recovery,
                     worker_count_per_proc=workers)


def output_of(settings: Settings) -> FlowOutput:
    return FlowOutput(read_jsonl(settings.output), read_jsonl(settings.dead_letter_path))


def run_batches(lines: Sequence[bytes], fallback_ts: Sequence[int], tmp: Path, *,
                window_size: int, emit_every: int, workers: int = 1, weights: str = "",
                sizes: Sequence[int] = (1, 3, 17, 50)) -> FlowOutput:
    """Run the job on ``lines`` fed as `RawBatch` items by a `TestingSource`."""
    settings = load_settings(job_env(tmp, window_size=window_size, emit_every=emit_every,
                                     weights=weights))
    execute(settings, workers=workers,
            source=TestingSource(raw_batches(lines, fallback_ts, sizes)))
    return output_of(settings)


def run_file(lines: Sequence[bytes], tmp: Path, *, window_size: int, emit_every: int,
             workers: int = 1, weights: str = "", batch_size: int | None = None,
             newline: bytes = b"\n", final_newline: bool = True) -> FlowOutput:
    """Run the job with its own file source on ``lines`` written to a JSON-lines file."""
    path = tmp / "input.jsonl"
    text = newline.join(lines)
    path.write_bytes(text + newline if final_newline else text)
    settings = load_settings(job_env(tmp, window_size=window_size, emit_every=emit_every,
                                     weights=weights, input_path=path, batch_size=batch_size))
    execute(settings, workers=workers)
    return output_of(settings)
