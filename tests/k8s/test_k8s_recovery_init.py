"""The init step: hostfile, and recovery partitions created once, atomically, or refused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.tools.recovery_init import (
    InitError,
    check_ordinal,
    ensure_partitions,
    found_partitions,
    main,
    peer_addresses,
)
from tests.k8s.manifests import REPO


def _parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".sqlite3")


def test_peer_addresses_follow_the_ordinal() -> None:
    assert peer_addresses("sts-{i}.peers.ns.svc.cluster.local:9999", 3) == [
        "sts-0.peers.ns.svc.cluster.local:9999",
        "sts-1.peers.ns.svc.cluster.local:9999",
        "sts-2.peers.ns.svc.cluster.local:9999",
    ]
    with pytest.raises(InitError, match="must contain"):
        peer_addresses("sts-0.peers:9999", 2)
    with pytest.raises(InitError, match=">= 1"):
        peer_addresses("sts-{i}:1", 0)


def test_creates_partitions_once_and_keeps_them(tmp_path: Path) -> None:
    directory = tmp_path / "volume" / "recovery"
    assert ensure_partitions(directory, 4).startswith("created 4")
    assert _parts(directory) == [f"part-{i}.sqlite3" for i in range(4)]
    stamps = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    assert ensure_partitions(directory, 4).startswith("kept 4")
    assert {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} == stamps
    assert [p.name for p in directory.parent.iterdir()] == ["recovery"], "no staging left"


def test_an_existing_empty_directory_is_filled(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    directory.mkdir()
    ensure_partitions(directory, 2)
    assert found_partitions(directory).complete


def test_count_is_fixed_once_created(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    ensure_partitions(directory, 2)
    message = ensure_partitions(directory, 8)
    assert message.startswith("kept 2") and "only applies to a new directory" in message
    assert len(_parts(directory)) == 2


def test_a_partial_set_is_refused_never_completed(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    ensure_partitions(directory, 3)
    (directory / "part-1.sqlite3").unlink()
    with pytest.raises(InitError, match=r"incomplete set .*part-0, part-2"):
        ensure_partitions(directory, 3)
    assert _parts(directory) == ["part-0.sqlite3", "part-2.sqlite3"]


def test_a_directory_of_other_files_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    directory.mkdir()
    (directory / "lost+found").mkdir()
    with pytest.raises(InitError, match="other files but no recovery partitions"):
        ensure_partitions(directory, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recovery"]


RACER = """
import sys, time
from pathlib import Path
from flows.tools.recovery_init import ensure_partitions
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
print(ensure_partitions(Path(sys.argv[1]), 6))
"""


def test_pods_racing_on_a_shared_volume_make_exactly_one_set(tmp_path: Path) -> None:
    """What podManagementPolicy: Parallel does: every pod's init runs at the same moment."""
    volume, go = tmp_path / "volume", tmp_path / "go"
    volume.mkdir()
    directory = volume / "recovery"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(directory), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(1.0)  # all four imported and spinning
    go.touch()
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    outcomes = sorted(out.split()[0] for _, out, _ in results)
    assert outcomes == ["created", "kept", "kept", "kept"], results
    assert _parts(directory) == [f"part-{i}.sqlite3" for i in range(6)]
    assert [p.name for p in volume.iterdir()] == ["recovery"], "a staging dir was left"
    # Each partition knows its own index and the count (Bytewax checks both on resume).
    for i in range(6):
        with sqlite3.connect(directory / f"part-{i}.sqlite3") as db:
            assert db.execute("SELECT part_index, part_count FROM parts").fetchall() == [(i, 6)]


def test_the_loser_of_a_race_keeps_the_winners_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministically: another pod renames its set into place while this one builds."""
    directory = tmp_path / "recovery"
    winner = tmp_path / "winner"
    ensure_partitions(winner, 3)
    real_rename = os.rename

    def rename_after_winner(src: str | Path, dst: str | Path) -> None:
        real_rename(winner, directory)  # the other pod got there first
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_winner)
    assert ensure_partitions(directory, 5).startswith("kept 3")
    assert _parts(directory) == [f"part-{i}.sqlite3" for i in range(3)]
    assert [p.name for p in tmp_path.iterdir()] == ["recovery"], "our staging dir was left"


def test_main_writes_the_hostfile_bytewax_reads(tmp_path: Path) -> None:
    env = {
        "BYTEWAX_HOSTFILE_PATH": str(tmp_path / "etc" / "hostfile"),
        "BYTEWAX_REPLICAS": "3",
        "BYTEWAX_PEER_ADDRESS": "job-{i}.peers.ns.svc:9999",
        "BYTEWAX_POD_NAME": "job-2",
        "BYTEWAX_STATEFULSET_NAME": "job",
    }
    assert main([], env) == 0
    lines = (tmp_path / "etc" / "hostfile").read_text().splitlines()
    assert lines == [
        "job-0.peers.ns.svc:9999",
        "job-1.peers.ns.svc:9999",
        "job-2.peers.ns.svc:9999",
    ]
    # bytewax.run joins the non-blank lines with ";" into its addresses.
    assert ";".join(a.strip() for a in lines if a.strip()).count(";") == 2


def test_a_pod_beyond_the_hostfile_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`kubectl scale` without changing BYTEWAX_REPLICAS: fail loudly, not hang."""
    with pytest.raises(InitError, match="ordinal 2 but BYTEWAX_REPLICAS=2"):
        check_ordinal({"BYTEWAX_POD_NAME": "job-2", "BYTEWAX_STATEFULSET_NAME": "job"}, 2)
    env = {
        "BYTEWAX_HOSTFILE_PATH": str(tmp_path / "hostfile"),
        "BYTEWAX_REPLICAS": "2",
        "BYTEWAX_PEER_ADDRESS": "job-{i}:1",
        "BYTEWAX_POD_NAME": "job-2",
        "BYTEWAX_STATEFULSET_NAME": "job",
    }
    assert main([], env) == 1
    assert "must change together" in capsys.readouterr().err
    assert not (tmp_path / "hostfile").exists()


def test_missing_partition_count_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([], {"BYTEWAX_RECOVERY_DIRECTORY": str(tmp_path / "r")}) == 1
    assert "BYTEWAX_RECOVERY_PARTS" in capsys.readouterr().err
    assert (
        main(
            [], {"BYTEWAX_RECOVERY_DIRECTORY": str(tmp_path / "r"), "BYTEWAX_RECOVERY_PARTS": "two"}
        )
        == 1
    )
