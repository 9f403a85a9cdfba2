"""The recovery layout, tested with real ``bytewax.run`` processes: one shared directory of
partitions, resumed across SIGKILLs while the process count changes 2 -> 3 -> 1.

This is the design decision of docs/kubernetes.md ("Recovery volume") under test: all pods see
all partitions, so Bytewax can hand each partition to whichever worker exists now. With
per-pod copies of all partitions (Bytewax's helm chart), the same sequence restarted from
scratch, panicked on 2 -> 3, and refused 2 -> 1 with InconsistentPartitionsError.

The job reads a JSON-lines file (bounded, so the last run ends by itself) and writes documents
to its exactly-once JSON-lines sink; the result must equal the oracle's, with every document
exactly once, and each restart must have resumed rather than started over.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flows.demo import demo_lines
from tests.k8s.loopback import LoopbackStatefulSet, recovery_log, wait_for
from tests.reference import compare, expected_run

pytestmark = pytest.mark.slow

RECORDS = 40_000
WINDOW, EMIT = 2000, 1000
PARTITIONS = 6  # >= the most workers below (3 x 1, 2 x 2)
# Small batches slow the job to a few thousand records a second, so that every phase spans
# several snapshot intervals without a large input (the oracle costs ~60 us a record).
BATCH = 10


def _model1_seq(path: Path) -> int:
    """How far model1 has got in the output (its last document's seq)."""
    if not path.exists():
        return 0
    seqs = re.findall(rb'"model":"model1".*?"seq":(\d+)', path.read_bytes())
    return int(seqs[-1]) if seqs else 0


def test_shared_partitions_resume_across_kills_and_process_counts(tmp_path: Path) -> None:
    lines = demo_lines(2026, RECORDS)
    source = tmp_path / "predictions.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    output = tmp_path / "documents.jsonl"
    env = {"CONFUSION_SOURCE": "file", "CONFUSION_INPUT": str(source),
           "CONFUSION_SINK": "jsonl", "CONFUSION_OUTPUT": str(output),
           "CONFUSION_DEAD_LETTER_PATH": str(tmp_path / "dead-letters.jsonl"),
           "CONFUSION_WINDOW_SIZE": str(WINDOW), "CONFUSION_EMIT_EVERY": str(EMIT),
           "CONFUSION_BATCH_SIZE": str(BATCH), "CONFUSION_PROGRESS": "off",
           "CONFUSION_SUMMARY": "false", "BYTEWAX_DATAFLOW_API_ENABLED": "1",
           "BYTEWAX_SNAPSHOT_INTERVAL": "1", "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "1",
           "BYTEWAX_RECOVERY_PARTS": str(PARTITIONS)}
    sts = LoopbackStatefulSet(tmp_path / "cluster", env)

    def snapshots_and_progress(since: int, fraction: float) -> bool:
        resume = recovery_log(sts.recovery_directory).resume_epoch
        return resume >= since + 2 and _model1_seq(output) >= fraction * RECORDS

    # 1. Two pods of two workers. One pod dies: the other must go down too (it cannot go on
    #    without its peer), which is why every pod loss restarts the whole cluster.
    first = sts.start(2, {"BYTEWAX_WORKERS_PER_PROCESS": "2"})
    wait_for(lambda: snapshots_and_progress(0, 0.25), 120, "snapshots and 25% done", sts)
    sts.kill([first[1]])
    wait_for(lambda: first[0].process.poll() is not None, 60, "pod 0 to fail without pod 1", sts)
    assert first[0].process.returncode != 0
    assert sorted(p.name for p in sts.recovery_directory.glob("part-*.sqlite3")) == sorted(
        f"part-{i}.sqlite3" for i in range(PARTITIONS)), "the init step must not add any"

    # 2. Three pods of one worker each, on the same partitions; SIGKILL all of them mid-way.
    before = recovery_log(sts.recovery_directory).resume_epoch
    sts.start(3, {"BYTEWAX_WORKERS_PER_PROCESS": "1"})
    wait_for(lambda: snapshots_and_progress(before, 0.6), 120, "snapshots and 60% done", sts)
    sts.kill()

    # 3. One pod of two workers finishes the input.
    third = sts.start(1, {"BYTEWAX_WORKERS_PER_PROCESS": "2", "CONFUSION_SUMMARY": "true"})
    third[0].process.wait(timeout=300)
    assert third[0].process.returncode == 0, sts.describe()

    # Each run resumed from the previous one's snapshot (Bytewax's own record of its runs) ...
    runs = recovery_log(sts.recovery_directory).executions
    assert [workers for _, workers, _ in runs] == [4, 3, 2], runs
    resumed_at = [epoch for _, _, epoch in runs]
    assert resumed_at[0] < resumed_at[1] < resumed_at[2], runs
    # ... so the last run counted only what was left, not the whole input again.
    summary = re.search(r"confusion-stream: ([\d,]+) records", third[0].log_text())
    assert summary is not None, third[0].log_text()[-2000:]
    assert int(summary.group(1).replace(",", "")) < 0.5 * RECORDS, "did not resume"

    # And the documents are exactly the oracle's: none lost, none twice, state intact.
    docs = [json.loads(line) for line in output.read_bytes().splitlines()]
    expected = expected_run(lines, window_size=WINDOW, emit_every=EMIT)
    problems = compare(docs, expected.documents)
    assert not problems, "\n".join(problems)
    dead = (tmp_path / "dead-letters.jsonl").read_bytes().splitlines()
    assert len(dead) == len(expected.rejections)
