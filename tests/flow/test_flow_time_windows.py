"""The real dataflow with ``CONFUSION_WINDOW_KIND=time`` writes exactly the reference documents.

The oracle (`tests.reference`) keeps each model's time window record by record from the README's
definition; the job keeps it in batches split at emissions. Streams cover in-order times with
every time form and bad line (adversarial, a 1 s window over records 250 ms apart) and skewed
times (equal, behind, on the bound, late, ahead; `tests.streams.time_skew_stream`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flow.cases import WEIGHTS
from tests.flow.runner import run_batches, run_file, weights_text
from tests.reference import assert_documents_match, expected_run
from tests.streams import Stream, adversarial_stream, time_skew_stream

WORKERS = [pytest.param(1, id="1-worker"), pytest.param(2, id="2-workers")]


def _stream(name: str) -> Stream:
    return adversarial_stream(240, seed=1) if name == "adversarial" else time_skew_stream()


# (stream, duration, its milliseconds, emit every, ensemble weights)
CASES = [
    pytest.param("adversarial", "1s", 1000, 7, "adversarial", id="adversarial-1s-e7-ensemble"),
    pytest.param("adversarial", "1s", 1000, 1, "none", id="adversarial-1s-e1"),
    pytest.param("time-skew", "2s", 2000, 1, "none", id="skew-2s-e1"),
    pytest.param("time-skew", "2s", 2000, 5, "none", id="skew-2s-e5"),
    pytest.param("time-skew", "2000ms", 2000, 1000, "none", id="skew-2s-e1000"),
]


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize(("name", "duration", "duration_ms", "emit_every", "weights"), CASES)
def test_in_memory_batches_give_reference_time_documents(
    tmp_path: Path,
    name: str,
    duration: str,
    duration_ms: int,
    emit_every: int,
    weights: str,
    workers: int,
) -> None:
    s = _stream(name)
    output = run_batches(
        s.lines,
        s.fallback_ts,
        tmp_path,
        window_size=1000,
        emit_every=emit_every,
        workers=workers,
        weights=weights_text(WEIGHTS[weights]),
        window_duration=duration,
    )
    reference = expected_run(
        s.lines,
        window_size=1000,
        emit_every=emit_every,
        weights=WEIGHTS[weights],
        fallback_ts=s.fallback_ts,
        engine="exact",
        window_duration_ms=duration_ms,
    )
    assert_documents_match(output.documents, reference.documents)
    assert len(output.dead_letters) == len(reference.rejections)


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_file_source_gives_reference_time_documents(tmp_path: Path, batch_size: int) -> None:
    """Every record of this stream has its own time, so the file's arrival times play no part."""
    s = time_skew_stream()
    output = run_file(
        s.lines,
        tmp_path,
        window_size=1000,
        emit_every=3,
        batch_size=batch_size,
        window_duration="2s",
    )
    reference = expected_run(
        s.lines, window_size=1000, emit_every=3, engine="exact", window_duration_ms=2000
    )
    assert_documents_match(output.documents, reference.documents)
    assert output.dead_letters == []
