"""Crash and resume in-process: the resumed run's output is exactly the uninterrupted output.

Two ways to crash: `TestingSource.ABORT` (1 worker only: Bytewax documents that the other workers
of an aborted cluster never learn to stop), and a batch whose first read raises inside the parse
step, which stops every worker, so it runs at 1 and 2 workers. The JSON-lines sinks must truncate
what the crashed epoch wrote, or the replay writes it twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, SupportsIndex

import pytest
from bytewax.recovery import init_db_dir
from bytewax.testing import TestingSource

from flows.parsing.batches import RawBatch
from flows.settings import load_settings
from tests.flow.runner import FlowOutput, execute, job_env, output_of, raw_batches
from tests.reference import assert_documents_match, expected_run
from tests.streams import BAD_LINES, Stream, adversarial_stream

# Dead letters of both scopes; all decodable JSON, so a parser bug cannot pose as a recovery bug.
RECOVERY_BAD_LINES = [
    b
    for b in BAD_LINES
    if b.kind
    in {"missing-label", "empty-predictions", "top-level-array", "entry-array", "entry-empty-map"}
]
WINDOW, EMIT = 5, 3
SIZES = (1, 4, 9)  # batch sizes, cycled: about 34 batches


def recovery_stream() -> Stream:
    return adversarial_stream(150, seed=5, bad_lines=RECOVERY_BAD_LINES)


class FirstReadHook(list[bytes]):
    """Batch values whose first read is slow (``delay`` seconds) or raises (``crash``).

    A crash in the parse step stops every worker; a delay spreads one epoch over several
    batches, so a crash can land after the epoch has already written documents.
    """

    def __init__(self, values: Sequence[bytes], delay: float = 0.0, crash: bool = False) -> None:
        super().__init__(values)
        self.delay, self.crash, self.armed = delay, crash, True

    def _fire(self) -> None:
        if self.armed:
            self.armed = False
            time.sleep(self.delay)
            if self.crash:
                raise RuntimeError("simulated crash while parsing")

    def __iter__(self) -> Any:
        self._fire()
        return super().__iter__()

    def __len__(self) -> int:
        self._fire()
        return super().__len__()

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        self._fire()
        return super().__getitem__(index)


def without_emitted_at(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in doc.items() if k != "emitted_at"} for doc in docs]


def _chain(exc: BaseException | None) -> str:
    """The messages of an exception and of everything that caused it."""
    text = ""
    while exc is not None:
        text += f"{exc!r}\n"
        exc = exc.__cause__ or exc.__context__
    return text


def run_until_done(
    tmp: Path, items: list[Any], workers: int, runs: int, epoch: timedelta
) -> tuple[FlowOutput, list[str]]:
    """Run ``runs`` times with recovery (a crashed or aborted run ends early); return the
    output and the errors the runs raised."""
    recovery = tmp / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)  # type: ignore[no-untyped-call]
    settings = load_settings(job_env(tmp, window_size=WINDOW, emit_every=EMIT))
    source = TestingSource(items)
    errors: list[str] = []
    for _ in range(runs):
        try:
            execute(settings, workers=workers, source=source, recovery_dir=recovery, epoch=epoch)
        except Exception as exc:  # the simulated crash surfaces as a BytewaxRuntimeError
            errors.append(_chain(exc))
    return output_of(settings), errors


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> FlowOutput:
    s = recovery_stream()
    tmp = tmp_path_factory.mktemp("uninterrupted")
    settings = load_settings(job_env(tmp, window_size=WINDOW, emit_every=EMIT))
    execute(settings, source=TestingSource(raw_batches(s.lines, s.fallback_ts, SIZES)))
    output = output_of(settings)
    reference = expected_run(
        s.lines, window_size=WINDOW, emit_every=EMIT, fallback_ts=s.fallback_ts, engine="exact"
    )
    assert_documents_match(output.documents, reference.documents)
    return output


@pytest.mark.parametrize("abort_before", [1, 10, 22, 33], ids=lambda i: f"batch-{i}")
def test_abort_then_resume_writes_exactly_the_uninterrupted_output(
    tmp_path: Path, uninterrupted: FlowOutput, abort_before: int
) -> None:
    """An ABORT ends the run at an epoch boundary: this checks the resumed window state,
    source position and last-emitted count (the sink's truncation is left to the crash test)."""
    s = recovery_stream()
    items: list[Any] = list(raw_batches(s.lines, s.fallback_ts, SIZES))
    assert abort_before < len(items)
    # One ABORT per run: TestingSource's resume index does not count ABORT markers it has
    # passed, so a second marker in the same list would make it replay one batch too many.
    items.insert(abort_before, TestingSource.ABORT())
    output, errors = run_until_done(tmp_path, items, workers=1, runs=2, epoch=timedelta(0))
    assert errors == []  # an ABORT ends run_main quietly
    assert without_emitted_at(output.documents) == without_emitted_at(uninterrupted.documents)
    assert output.dead_letters == uninterrupted.dead_letters


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
@pytest.mark.parametrize(
    ("epoch", "delay"),
    [(timedelta(0), 0.0), (timedelta(milliseconds=40), 0.01), (timedelta(seconds=10), 0.0)],
    ids=["epoch-per-batch", "epochs-of-several-batches", "no-snapshot-before-crash"],
)
def test_crashes_in_the_parse_step_then_resume_lose_and_repeat_nothing(
    tmp_path: Path, uninterrupted: FlowOutput, workers: int, epoch: timedelta, delay: float
) -> None:
    s = recovery_stream()
    items: list[Any] = list(raw_batches(s.lines, s.fallback_ts, SIZES))
    crash_at = [2, 17, len(items) - 1]
    for i, batch in enumerate(items):
        items[i] = RawBatch(
            FirstReadHook(batch.values, delay, crash=i in crash_at),
            batch.fallback_ts,
            batch.origin,
            batch.positions,
        )
    output, errors = run_until_done(
        tmp_path, items, workers=workers, runs=len(crash_at) + 1, epoch=epoch
    )
    assert len(errors) == len(crash_at)
    assert all("simulated crash while parsing" in error for error in errors), errors
    assert sorted(map(repr, without_emitted_at(output.documents))) == sorted(
        map(repr, without_emitted_at(uninterrupted.documents))
    )
    assert sorted(map(repr, output.dead_letters)) == sorted(map(repr, uninterrupted.dead_letters))
