"""The real dataflow, at 1 and 2 workers, writes exactly the reference documents."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from tests.flow.cases import WEIGHTS, expected, stream
from tests.flow.runner import FlowOutput, run_batches, run_file, weights_text
from tests.reference import ExpectedRun, MetricsEngine, assert_documents_match

WORKERS = [pytest.param(1, id="1-worker"), pytest.param(2, id="2-workers")]

# (stream, window size, emit every, ensemble weights, metrics engine). scikit-learn costs ~20 ms
# per distinct window, so the cases with hundreds of windows use the reference's exact-arithmetic
# metrics, which tests/unit/test_reference.py checks against scikit-learn.
CASES = [
    pytest.param("sample", 1000, 300, "sample", "sklearn", id="sample-w1000-e300-ensemble"),
    pytest.param("adversarial", 5, 7, "adversarial", "exact", id="adversarial-w5-e7-ensemble"),
    pytest.param("adversarial", 1000, 7, "none", "exact", id="adversarial-w1000-e7"),
    pytest.param("adversarial", 1, 1, "adversarial", "exact", id="adversarial-w1-e1-ensemble"),
    pytest.param("adversarial", 1000, 1, "none", "exact", id="adversarial-w1000-e1"),
    pytest.param("adversarial-short", 5, 7, "adversarial", "sklearn", id="short-w5-e7-ensemble"),
    pytest.param("many-labels", 5, 7, "none", "sklearn", id="300-labels-w5-e7"),
    pytest.param("many-labels", 1000, 40, "none", "sklearn", id="300-labels-w1000-e40"),
    pytest.param("single-class", 5, 1, "none", "sklearn", id="single-class-w5-e1"),
]


def _assert_matches(output: FlowOutput, reference: ExpectedRun) -> None:
    assert_documents_match(output.documents, reference.documents)
    assert len(output.dead_letters) == len(reference.rejections)


def _assert_per_model_order(output: FlowOutput) -> None:
    """One model's documents are written in the order of their ``seq``."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for doc in output.documents:
        seqs[doc["model"]].append(doc["seq"])
    for model, found in seqs.items():
        assert found == sorted(found), f"{model}: documents written out of order: {found}"


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize(("name", "window_size", "emit_every", "weights", "engine"), CASES)
def test_in_memory_batches_give_reference_documents(
    tmp_path: Path,
    name: str,
    window_size: int,
    emit_every: int,
    weights: str,
    engine: MetricsEngine,
    workers: int,
) -> None:
    s = stream(name)
    output = run_batches(
        s.lines,
        s.fallback_ts,
        tmp_path,
        window_size=window_size,
        emit_every=emit_every,
        workers=workers,
        weights=weights_text(WEIGHTS[weights]),
    )
    _assert_matches(output, expected(name, window_size, emit_every, weights, engine=engine))
    _assert_per_model_order(output)


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_file_source_gives_reference_documents(
    tmp_path: Path, workers: int, batch_size: int
) -> None:
    """Records without ``ts`` get the arrival time here, so only those times are left open."""
    s = stream("adversarial")
    output = run_file(
        s.lines,
        tmp_path,
        window_size=5,
        emit_every=7,
        workers=workers,
        weights=weights_text(WEIGHTS["adversarial"]),
        batch_size=batch_size,
    )
    _assert_matches(
        output, expected("adversarial", 5, 7, "adversarial", known_fallback=False, engine="exact")
    )


def test_crlf_line_endings_and_no_final_newline(tmp_path: Path) -> None:
    """A file written on Windows, its last line unterminated, reads the same."""
    s = stream("adversarial-short")
    output = run_file(
        s.lines,
        tmp_path,
        window_size=5,
        emit_every=7,
        newline=b"\r\n",
        final_newline=False,
        batch_size=10,
    )
    _assert_matches(
        output, expected("adversarial-short", 5, 7, known_fallback=False, engine="exact")
    )


def test_sample_stream_without_ensemble_through_file_source(tmp_path: Path) -> None:
    """The sample stream, as a user runs it: defaults but for the paths."""
    s = stream("sample")
    output = run_file(s.lines, tmp_path, window_size=1000, emit_every=300)
    reference = expected("sample", 1000, 300, "sample")
    without_ensemble = {
        key: doc for key, doc in reference.documents.items() if key[0] != "ensemble"
    }
    assert_documents_match(output.documents, without_ensemble)
    assert output.dead_letters == []


def test_emission_count_is_per_model_not_per_record(tmp_path: Path) -> None:
    """A model missing from most records still emits at each multiple of its own count."""
    lines = [
        b'{"id": %d, "ts": %d, "label": "a", "predictions": {"often": "a"%s}}'
        % (i, 1_795_341_600_000 + i, b', "rare": "b"' if i % 10 == 0 else b"")
        for i in range(100)
    ]
    output = run_batches(lines, [0] * len(lines), tmp_path, window_size=4, emit_every=5)
    seqs = sorted((d["model"], d["seq"]) for d in output.documents)
    assert [s for m, s in seqs if m == "rare"] == [5, 10]
    assert [s for m, s in seqs if m == "often"] == list(range(5, 101, 5))
