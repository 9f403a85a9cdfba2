"""CONFUSION_MAX_CLASSES through the real dataflow (issue 10 break 9)."""

from __future__ import annotations

from pathlib import Path

from flows.settings import load_settings
from tests.flow.runner import execute, job_env, output_of
from tests.unit.test_limits import record


def test_class_limit_dead_letters_reach_the_jobs_dead_letter_file(tmp_path: Path) -> None:
    """Through the real dataflow: the window step's refusals join the parser's dead letters."""
    lines = [record(i, label=f"c{i % 5}", pred=f"c{i % 5}") for i in range(20)] + [b"{"]
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = job_env(tmp_path, window_size=100, emit_every=100, input_path=path)
    settings = load_settings({**env, "CONFUSION_MAX_CLASSES": "3"})
    execute(settings, workers=2)
    out = output_of(settings)
    assert out.documents[-1]["labels"] == ["c0", "c1", "c2"]
    refused = sorted((d["source"]["position"], d["scope"]) for d in out.dead_letters)
    assert refused == sorted([(i + 1, "entry") for i in range(20) if i % 5 >= 3] + [(21, "record")])
