"""The exec probe `python -m flows.tools.health`: fresh, stale, missing and inherited heartbeats."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.telemetry import Heartbeat
from flows.tools.health import MISCONFIGURED, OK, UNHEALTHY, check, judge, main, process_start_time
from tests.k8s.manifests import REPO

NOW = 1_800_000_000.0
HB = Path("/run/confusion/heartbeat")


def test_fresh_heartbeat_is_healthy() -> None:
    verdict = judge(HB, NOW - 3, NOW, max_age=30, started_at=NOW - 100)
    assert verdict.code == OK


def test_stale_heartbeat_names_its_age_and_the_limit() -> None:
    verdict = judge(HB, NOW - 45, NOW, max_age=30, started_at=NOW - 100)
    assert verdict.code == UNHEALTHY
    assert "45.0s old (limit 30s)" in verdict.reason and "stopped polling" in verdict.reason


def test_missing_heartbeat_is_unhealthy() -> None:
    verdict = judge(HB, None, NOW, max_age=30)
    assert verdict.code == UNHEALTHY and "no heartbeat" in verdict.reason


def test_heartbeat_left_by_a_previous_container_does_not_count() -> None:
    # Written 5 s ago, but the container restarted 2 s ago: the new process has not polled yet.
    verdict = judge(HB, NOW - 5, NOW, max_age=30, started_at=NOW - 2)
    assert verdict.code == UNHEALTHY and "predates this container" in verdict.reason
    # Within the coarse clock's slack it still counts.
    assert judge(HB, NOW - 2.5, NOW, max_age=30, started_at=NOW - 2).code == OK


def test_a_clock_step_backwards_is_not_a_failure() -> None:
    assert judge(HB, NOW + 5, NOW, max_age=30).code == OK


def test_process_start_time_is_when_the_process_started() -> None:
    started = process_start_time(os.getpid())
    assert started is not None
    assert time.time() - 3600 * 24 * 365 < started <= time.time() + 1
    assert process_start_time(2**22 + 12345) is None  # no such process


def test_check_reads_the_file_the_job_touches(tmp_path: Path) -> None:
    path = tmp_path / "hb"
    Heartbeat(path).beat()  # what every source poll does
    assert check(path, max_age=30, since_pid=os.getpid()).code == OK
    old = time.time() - 100
    os.utime(path, (old, old))
    assert check(path, max_age=30, since_pid=None).code == UNHEALTHY
    # Fresh again, but older than a process that starts afterwards: stale for that one.
    os.utime(path, (time.time() - 20, time.time() - 20))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert check(path, max_age=30, since_pid=child.pid).code == UNHEALTHY
        assert check(path, max_age=30, since_pid=None).code == OK
    finally:
        child.kill()
        child.wait()


def test_main_reads_the_variable_and_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONFUSION_HEARTBEAT_FILE", raising=False)
    assert main([]) == MISCONFIGURED
    monkeypatch.setenv("CONFUSION_HEARTBEAT_FILE", str(tmp_path / "hb"))
    assert main(["--max-age", "10", "--since-pid", "0"]) == UNHEALTHY
    (tmp_path / "hb").touch()
    assert main(["--max-age", "10", "--since-pid", "0"]) == OK
    out = capsys.readouterr()
    assert len(out.err.strip().splitlines()) == 2, "one line per failure"


def test_probe_command_runs_fast_and_prints_one_line(tmp_path: Path) -> None:
    """As the kubelet runs it: a fresh interpreter, stdlib only, well under its timeout."""
    path = tmp_path / "hb"
    env = {
        "PATH": os.environ["PATH"],
        "CONFUSION_HEARTBEAT_FILE": str(path),
        "PYTHONPATH": str(REPO),
    }
    started = time.monotonic()
    missing = subprocess.run(
        [sys.executable, "-m", "flows.tools.health", "--max-age", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert missing.returncode == UNHEALTHY
    assert len(missing.stderr.strip().splitlines()) == 1
    assert elapsed < 2.0, f"probe took {elapsed:.2f}s"
    path.touch()
    ok = subprocess.run(
        [sys.executable, "-m", "flows.tools.health", "--max-age", "60", "--since-pid", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == OK, ok.stderr
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, flows.tools.health; "
            "print(sorted(m for m in ('numpy', 'bytewax', 'pydantic') if m in sys.modules))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert imported.stdout.strip() == "[]", "the probe must stay light"
