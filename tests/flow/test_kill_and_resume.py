"""SIGKILL the real job part way and resume it: the output must be the uninterrupted output.

The job runs as users run it, ``python -m bytewax.run flows.confusion -r DIR -s 1 -b 0``, on the
demo stream written to a JSON-lines file. The run to be killed is `tests.gated_flow` (the same
job, its file source held at a line a little past the kill point), so the kill always lands part
way however fast the machine is; it comes once the output file has grown past a fraction of the
full output. The resumed run is the real job, with the same command. The final file must hold
every document of an uninterrupted run once, with the same values (``emitted_at`` aside), and the
same dead letters.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

import flows
from flows.demo import demo_lines
from tests.flow.runner import FlowOutput
from tests.reference import ANY_TIME, Doc, assert_documents_match

pytestmark = pytest.mark.slow

RECORDS = 100_000
SEED = 2026
BATCH_SIZE = 100
GATE_MARGIN = 0.05  # the gate is this fraction of the input past the kill point
TIMEOUT_S = 180
# The directory holding the `flows` package this test process imports, so the job under test
# is the same code.
CODE_ROOT = Path(flows.__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Job:
    """One job directory: its input, outputs and recovery partitions."""

    root: Path
    input_path: Path

    @property
    def output(self) -> Path:
        return self.root / "documents.jsonl"

    @property
    def dead_letters(self) -> Path:
        return self.root / "dead-letters.jsonl"

    @property
    def recovery(self) -> Path:
        return self.root / "recovery"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONFUSION_")}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(CODE_ROOT), env.get("PYTHONPATH")])
                ),
                "CONFUSION_SOURCE": "file",
                "CONFUSION_INPUT": str(self.input_path),
                "CONFUSION_OUTPUT": str(self.output),
                "CONFUSION_DEAD_LETTER_PATH": str(self.dead_letters),
                "CONFUSION_WINDOW_SIZE": "1000",
                "CONFUSION_EMIT_EVERY": "100",
                "CONFUSION_PROGRESS": "off",
                "CONFUSION_SUMMARY": "false",
                "CONFUSION_BATCH_SIZE": str(BATCH_SIZE),
            }
        )
        return env

    def init(self) -> None:
        """Create the recovery partitions, as a user does before the first run."""
        self.recovery.mkdir(parents=True)
        done = subprocess.run(
            [sys.executable, "-m", "bytewax.recovery", str(self.recovery), "1"],
            env=self.env(),
            cwd=self.root,
            timeout=60,
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    def start(self, workers: int, gate: int | None = None) -> subprocess.Popen[bytes]:
        """The job; with ``gate``, `tests.gated_flow` reading no line past ``gate``."""
        env = self.env()
        module = "flows.confusion"
        if gate is not None:
            (self.root / "gate").write_text(str(gate))
            env["TEST_GATE_FILE"] = str(self.root / "gate")
            module = "tests.gated_flow"
        command = [
            sys.executable,
            "-m",
            "bytewax.run",
            module,
            "-r",
            str(self.recovery),
            "-s",
            "1",
            "-b",
            "0",
            "-w",
            str(workers),
        ]
        return subprocess.Popen(
            command, env=env, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def run(self, workers: int = 1) -> None:
        process = self.start(workers)
        _, stderr = process.communicate(timeout=TIMEOUT_S)
        assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]

    def output_now(self) -> FlowOutput:
        """The complete lines written so far: a SIGKILL can stop the sink mid-line, and the
        resume truncates that torn tail back to the snapshot's offset."""
        return FlowOutput(_complete_lines(self.output), _complete_lines(self.dead_letters))


def _complete_lines(path: Path) -> list[Doc]:
    if not path.exists():
        return []
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line]


def committed_epoch(recovery: Path) -> int | None:
    """The last epoch whose snapshots Bytewax has committed, if any (read while it runs)."""
    try:
        with closing(
            sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True, timeout=0.2)
        ) as db:
            row = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def input_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-input") / "demo.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in demo_lines(SEED, RECORDS)))
    return path


def ids_without_ts(path: Path) -> set[str]:
    """Ids of the demo's records without ``ts``: their time is the arrival time, different
    in every run."""
    ids = set()
    for line in path.read_bytes().splitlines():
        if b'"ts"' not in line:
            with suppress(ValueError):
                ids.add(json.loads(line)["id"])
    return ids


def expected_from(full: FlowOutput, unknown_time: set[str]) -> dict[tuple[str, int], Doc]:
    """The uninterrupted documents as expectations; arrival times match any time."""
    expected = {}
    for doc in full.documents:
        window = dict(doc["window"])
        if window["first_id"] in unknown_time:
            window["start"] = ANY_TIME
        if window["last_id"] in unknown_time:
            window["end"] = ANY_TIME
        expected[(doc["model"], doc["seq"])] = {**doc, "window": window}
    return expected


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, input_path: Path
) -> tuple[FlowOutput, int]:
    job = Job(tmp_path_factory.mktemp("uninterrupted"), input_path)
    job.init()
    job.run()
    output = job.output_now()
    assert len(output.documents) == 3 * RECORDS // 100  # 3 models, one document per 100
    return output, _size(job.output)


@pytest.mark.parametrize(
    ("fraction", "after_snapshot", "workers"),
    [(0.2, False, 1), (0.6, True, 1), (0.4, True, 2)],
    ids=["early-20%-1-worker", "after-a-snapshot-60%-1-worker", "after-a-snapshot-40%-2-workers"],
)
def test_sigkill_then_resume_gives_the_uninterrupted_output(
    tmp_path: Path,
    input_path: Path,
    uninterrupted: tuple[FlowOutput, int],
    fraction: float,
    after_snapshot: bool,
    workers: int,
) -> None:
    """Killed at a point where the output has ``fraction`` of its final size (and, if
    ``after_snapshot``, Bytewax has committed a snapshot, so the resume really resumes)."""
    full, full_size = uninterrupted
    job = Job(tmp_path, input_path)
    job.init()

    process = job.start(workers, gate=int((fraction + GATE_MARGIN) * RECORDS))
    deadline = time.monotonic() + TIMEOUT_S
    while _size(job.output) < fraction * full_size or (
        after_snapshot and committed_epoch(job.recovery) is None
    ):
        assert process.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "the job's output did not grow"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = len(job.output_now().documents)
    assert 0 < killed_at < len(full.documents)

    job.run(workers)
    resumed = job.output_now()
    keys = Counter((d["model"], d["seq"]) for d in resumed.documents)
    assert [key for key, n in keys.items() if n > 1] == [], "documents written twice"
    assert_documents_match(resumed.documents, expected_from(full, ids_without_ts(input_path)))
    assert Counter(map(repr, resumed.dead_letters)) == Counter(map(repr, full.dead_letters))
