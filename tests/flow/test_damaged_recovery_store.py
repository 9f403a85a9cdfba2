"""A damaged recovery store (a partition file truncated, emptied or missing) stops the job with
the file's name and what to do; it never restarts from zero."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.recovery_store import (
    RecoveryStoreError,
    backup_interval_from,
    check_recovery_store,
    recovery_dir_from,
)

REPO = Path(__file__).resolve().parents[2]


def run_job(recovery: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONFUSION_", "BYTEWAX_"))}
    env.update(
        PYTHONPATH=str(REPO),
        CONFUSION_DEMO_RECORDS="1500",
        CONFUSION_OUTPUT=str(tmp / "out.jsonl"),
        CONFUSION_DEAD_LETTER_PATH=str(tmp / "dead.jsonl"),
        CONFUSION_ALERTS_OUTPUT=str(tmp / "alerts.jsonl"),
        CONFUSION_SUMMARY="false",
        CONFUSION_PROGRESS="off",
    )
    return subprocess.run(
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
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recovery store of 2 partitions with a run's checkpoints in it."""
    tmp = tmp_path_factory.mktemp("store")
    recovery = tmp / "recovery"
    recovery.mkdir()
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(recovery), "2"], check=True, timeout=60
    )
    done = run_job(recovery, tmp)
    assert done.returncode == 0, done.stderr
    return recovery


@pytest.fixture
def copy(store: Path, tmp_path: Path) -> Path:
    target = tmp_path / "recovery"
    shutil.copytree(store, target)
    return target


def test_a_whole_store_passes(copy: Path) -> None:
    assert check_recovery_store(copy) == 2


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda p: p.unlink(), "part-1.sqlite3 is missing (1 of 2 partitions missing)"),
        (lambda p: os.truncate(p, 1000), "part-1.sqlite3 cannot be read"),
        (lambda p: os.truncate(p, 0), "part-1.sqlite3 is empty (truncated to 0 bytes)"),
    ],
    ids=["missing", "truncated", "emptied"],
)
def test_a_damaged_partition_stops_the_job_naming_the_file(
    copy: Path, tmp_path: Path, damage: object, says: str
) -> None:
    part = copy / "part-1.sqlite3"
    damage(part)  # type: ignore[operator]
    before = part.read_bytes() if part.exists() else None
    with pytest.raises(RecoveryStoreError, match="recovery store damaged") as caught:
        check_recovery_store(copy)
    assert says in str(caught.value) and "python -m bytewax.recovery" in str(caught.value)

    done = run_job(copy, tmp_path)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Restore the file from a backup" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.jsonl").exists(), "the job must not have started"
    assert (part.read_bytes() if part.exists() else None) == before, "the evidence is untouched"


def test_a_store_with_no_partition_at_all(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecoveryStoreError, match="holds no partition file"):
        check_recovery_store(tmp_path / "empty")


def test_the_recovery_directory_is_read_as_bytewax_reads_it() -> None:
    assert recovery_dir_from(["run.py", "flows.confusion", "-r", "rec", "-s", "5"], {}) == Path(
        "rec"
    )
    assert recovery_dir_from(["x", "--recovery-directory=r2"], {}) == Path("r2")
    assert recovery_dir_from(["x"], {"BYTEWAX_RECOVERY_DIRECTORY": "r3"}) == Path("r3")
    assert recovery_dir_from(["x"], {}) is None


def test_the_backup_interval_is_read_as_bytewax_reads_it() -> None:
    """It sets how long the join keeps segments no snapshot names any more."""
    assert backup_interval_from(["run.py", "-r", "rec", "-s", "5", "-b", "3600"], {}) == 3600
    assert backup_interval_from(["x", "--backup-interval=90"], {}) == 90
    assert backup_interval_from(["x"], {"BYTEWAX_RECOVERY_BACKUP_INTERVAL": "7.5"}) == 7.5
    assert backup_interval_from(["x"], {}) == 0
    assert backup_interval_from(["x", "-b", "soon"], {}) == 0
