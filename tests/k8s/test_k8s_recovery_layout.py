"""The recovery layout, tested with real ``bytewax.run`` processes: one shared directory of
partitions, resumed across SIGKILLs while the process count changes 2 -> 3 -> 1.

This is the design decision of docs/kubernetes.md ("Recovery volume") under test: all pods see
all partitions, so Bytewax can hand each partition to whichever worker exists now. With
per-pod copies of all partitions (Bytewax's helm chart), the same sequence restarted from
scratch, panicked on 2 -> 3, and refused 2 -> 1 with InconsistentPartitionsError.

The job reads a JSON-lines file (bounded, so the last run ends by itself) and writes documents
to its exactly-once JSON-lines sink; the result must equal the oracle's, with every document
exactly once, and each restart must have resumed rather than started over.

"Mid-way" is a state, not a time: until the last run the pods run `tests.gated_flow` (the real
job whose file source stops at a line the test sets), and each kill comes once the input is read
up to that line, its documents are written and two snapshots have followed. A fast machine cannot
finish the input before the kill (which left the last run nothing to count), a slow one only
takes longer. The last run is the real ``flows.confusion``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flows.demo import demo_lines
from tests.k8s.loopback import JOB, LoopbackStatefulSet, recovery_log, wait_for
from tests.reference import compare, expected_run

pytestmark = pytest.mark.slow

RECORDS = 40_000
WINDOW, EMIT = 2000, 1000
PARTITIONS = 6  # >= the most workers below (3 x 1, 2 x 2)
BATCH = 100
GATED_JOB = (*JOB[:-1], "tests.gated_flow")


def _model1_seq(path: Path) -> int:
    """How far model1 has got in the output (its last document's seq)."""
    if not path.exists():
        return 0
    seqs = re.findall(rb'"model":"model1".*?"seq":(\d+)', path.read_bytes())
    return int(seqs[-1]) if seqs else 0


def test_shared_partitions_resume_across_kills_and_process_counts(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    lines = demo_lines(2026, RECORDS)
    source = tmp_path / "predictions.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    output = tmp_path / "documents.jsonl"
    env = {
        "CONFUSION_SOURCE": "file",
        "CONFUSION_INPUT": str(source),
        "CONFUSION_SINK": "jsonl",
        "CONFUSION_OUTPUT": str(output),
        "CONFUSION_DEAD_LETTER_PATH": str(tmp_path / "dead-letters.jsonl"),
        "CONFUSION_WINDOW_SIZE": str(WINDOW),
        "CONFUSION_EMIT_EVERY": str(EMIT),
        "CONFUSION_BATCH_SIZE": str(BATCH),
        "CONFUSION_PROGRESS": "off",
        "CONFUSION_SUMMARY": "false",
        "BYTEWAX_DATAFLOW_API_ENABLED": "1",
        "BYTEWAX_SNAPSHOT_INTERVAL": "1",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "1",
        "BYTEWAX_RECOVERY_PARTS": str(PARTITIONS),
        "TEST_GATE_FILE": str(tmp_path / "gate"),
    }
    sts = LoopbackStatefulSet(tmp_path / "cluster", env, job_command=GATED_JOB)
    request.addfinalizer(sts.kill)  # a failed wait leaves no pod running

    def open_gate(fraction: float) -> None:
        (tmp_path / "gate").write_text(str(int(fraction * RECORDS)))

    def snapshots_and_progress(since: int, fraction: float) -> bool:
        """Read up to the gate at ``fraction``, documents out, 2 snapshots since ``since``."""
        # model1 misses the malformed lines (1 in 5,000) and emits every EMIT of its records.
        written = _model1_seq(output) >= fraction * RECORDS - EMIT
        return written and recovery_log(sts.recovery_directory).resume_epoch >= since + 2

    # 1. Two pods of two workers. One pod dies: the other must go down too (it cannot go on
    #    without its peer), which is why every pod loss restarts the whole cluster.
    open_gate(0.25)
    first = sts.start(2, {"BYTEWAX_WORKERS_PER_PROCESS": "2"})
    wait_for(lambda: snapshots_and_progress(0, 0.25), 120, "snapshots and 25% done", sts)
    sts.kill([first[1]])
    wait_for(lambda: first[0].process.poll() is not None, 60, "pod 0 to fail without pod 1", sts)
    assert first[0].process.returncode != 0
    assert sorted(p.name for p in sts.recovery_directory.glob("part-*.sqlite3")) == sorted(
        f"part-{i}.sqlite3" for i in range(PARTITIONS)
    ), "the init step must not add any"

    # 2. Three pods of one worker each, on the same partitions; SIGKILL all of them mid-way.
    before = recovery_log(sts.recovery_directory).resume_epoch
    open_gate(0.6)
    sts.start(3, {"BYTEWAX_WORKERS_PER_PROCESS": "1"})
    wait_for(lambda: snapshots_and_progress(before, 0.6), 120, "snapshots and 60% done", sts)
    sts.kill()

    # 3. One pod of two workers, the real job, finishes the input.
    sts.job_command = JOB
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
