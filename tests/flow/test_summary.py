"""The summary a bounded run prints, from real ``python -m bytewax.run`` / ``bytewax.testing`` runs.

One summary partition on one worker prints it, so its totals must come through the dataflow from
every process, and it must print even when the run emits no document (Bytewax builds a sink
partition without a snapshot only when an item reaches it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flows
from flows.demo import sample_lines

pytestmark = pytest.mark.slow

CODE_ROOT = Path(flows.__file__).resolve().parent.parent
TOTALS = re.compile(
    r"confusion-stream: ([\d,]+) records .* rejected ([\d,]+) records \+ "
    r"([\d,]+) entries  ([\d,]+) documents"
)


def run(
    tmp: Path, lines: list[bytes], *args: str, module: str = "bytewax.run", summary: bool = True
) -> str:
    """Run the job on ``lines`` (written once to ``tmp/input.jsonl``); return its stderr."""
    source = tmp / "input.jsonl"
    if not source.exists():
        source.write_bytes(b"".join(line + b"\n" for line in lines))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFUSION_")}
    env.update(
        {
            "PYTHONPATH": str(CODE_ROOT),
            "CONFUSION_SOURCE": "file",
            "CONFUSION_INPUT": str(source),
            "CONFUSION_OUTPUT": str(tmp / "docs.jsonl"),
            "CONFUSION_DEAD_LETTER_PATH": str(tmp / "dead.jsonl"),
            "CONFUSION_PROGRESS": "off",
            "CONFUSION_SUMMARY": str(summary).lower(),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", module, "flows.confusion", *args],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def totals(stderr: str) -> tuple[int, ...]:
    found = TOTALS.search(stderr)
    assert found is not None, f"no summary line in:\n{stderr[-2000:]}"
    return tuple(int(g.replace(",", "")) for g in found.groups())


def test_two_processes_print_the_totals_of_both(tmp_path: Path) -> None:
    stderr = run(tmp_path, sample_lines(), "-w", "1", "-p", "2", module="bytewax.testing")
    assert totals(stderr) == (6000, 0, 0, 180)  # 3 models, a document every 100 records
    assert len(TOTALS.findall(stderr)) == 1  # one summary, not one per process
    for model in ("model1", "model2", "model3"):
        assert re.search(rf"^{model} +6,000 ", stderr, re.MULTILINE), stderr


def test_empty_input_prints_a_summary(tmp_path: Path) -> None:
    assert totals(run(tmp_path, [])) == (0, 0, 0, 0)


def test_input_of_bad_records_only_prints_their_count(tmp_path: Path) -> None:
    stderr = run(tmp_path, [b"{not json", b'{"id": 1, "predictions": {"m": "a"}}'])
    assert totals(stderr) == (0, 2, 0, 0)


def test_run_resumed_at_the_end_prints_that_it_counted_nothing(tmp_path: Path) -> None:
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(recovery), "1"],
        check=True,
        timeout=60,
        capture_output=True,
    )
    resume = ("-r", str(recovery), "-s", "1", "-b", "0")
    lines = sample_lines()[:500]
    assert TOTALS.search(run(tmp_path, lines, *resume, summary=False)) is None
    assert totals(run(tmp_path, lines, *resume)) == (0, 0, 0, 0)
