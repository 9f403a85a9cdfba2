"""Alerts of the real job: the demo's drifting model alerts, the steady ones do not, and a
SIGKILL part way loses and duplicates no alert.

The job runs as users run it (``python -m bytewax.run flows.confusion -r DIR -s 1 -b 0``) on
the embedded demo with small batches, so it runs long enough to be killed after the drift and
after a committed snapshot. The resumed ``alerts.jsonl`` must equal the uninterrupted one,
``emitted_at`` aside.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

import flows

pytestmark = pytest.mark.slow

CODE_ROOT = Path(flows.__file__).resolve().parent.parent
TIMEOUT_S = 240


def env(root: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONFUSION_")}
    out.update(
        {
            "PYTHONPATH": str(CODE_ROOT),
            "CONFUSION_OUTPUT": str(root / "documents.jsonl"),
            "CONFUSION_ALERTS_OUTPUT": str(root / "alerts.jsonl"),
            "CONFUSION_DEAD_LETTER_PATH": str(root / "dead-letters.jsonl"),
            "CONFUSION_PROGRESS": "off",
            "CONFUSION_SUMMARY": "false",
            "CONFUSION_BATCH_SIZE": "50",
        }
    )
    return out


def start(root: Path) -> subprocess.Popen[bytes]:
    recovery = root / "recovery"
    if not recovery.exists():
        recovery.mkdir(parents=True)
        subprocess.run(
            [sys.executable, "-m", "bytewax.recovery", str(recovery), "1"],
            env=env(root),
            cwd=root,
            timeout=60,
            check=True,
            capture_output=True,
        )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bytewax.run",
            "flows.confusion",
            "-r",
            str(recovery),
            "-s",
            "1",
            "-b",
            "0",
        ],
        env=env(root),
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes]) -> None:
    _, err = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, err.decode(errors="replace")[-3000:]


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def stable(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k != "emitted_at"} for a in alerts]


def committed_epoch(recovery: Path) -> int | None:
    try:
        with closing(
            sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True, timeout=0.2)
        ) as db:
            row = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("alerts-uninterrupted")
    finish(start(root))
    return read(root / "alerts.jsonl")


def test_the_demo_alerts_for_the_drifting_model_only(uninterrupted: list[dict[str, Any]]) -> None:
    assert {a["model"] for a in uninterrupted} == {"model2"}
    assert {(a["source"], a["status"]) for a in uninterrupted} == {
        ("detector", "fired"),
        ("rule", "fired"),
    }
    assert len({a["id"] for a in uninterrupted}) == len(uninterrupted)
    assert all(a["fired_seq"] > 45_000 for a in uninterrupted)  # after the drift at half way


def test_sigkill_after_the_drift_then_resume_gives_the_same_alerts(
    tmp_path: Path, uninterrupted: list[dict[str, Any]]
) -> None:
    process = start(tmp_path)
    deadline = time.monotonic() + TIMEOUT_S
    # Killed once the first alert is written and a later snapshot is committed, so the resumed
    # run restores open alerts and detector state from the checkpoint.
    while not (read(tmp_path / "alerts.jsonl") and committed_epoch(tmp_path / "recovery")):
        assert process.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "no alert was written"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert len(read(tmp_path / "documents.jsonl")) < 3_000, "killed too late to test a resume"
    finish(start(tmp_path))
    assert stable(read(tmp_path / "alerts.jsonl")) == stable(uninterrupted)
