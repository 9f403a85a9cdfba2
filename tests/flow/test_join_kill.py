"""SIGKILL the real job while halves wait in the join, resume it: the uninterrupted output.

One mixed file (predictions and labels in one stream, the join on by CONFUSION_LABEL_TTL): the
first predictions' labels come late, so they wait across the kill (and are in the
snapshot), a share is never labeled and expires on the event-time clock, and a few labels have
no prediction. The killed run is `tests.gated_flow` (see `tests.flow.test_kill_and_resume`);
the kill comes once documents are written and a snapshot committed. The resumed run's documents,
join counts included, and dead letters must be the uninterrupted run's.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.demo import sample_lines
from tests.flow.runner import FlowOutput
from tests.flow.test_kill_and_resume import TIMEOUT_S, Job, _size, committed_epoch
from tests.reference import assert_documents_match

pytestmark = pytest.mark.slow

T0 = 1_795_341_600_000
WAIT_FIRST = 300  # the labels of the first predictions come after record LATE_AT
LATE_AT = 2600


def mixed_lines() -> list[bytes]:
    records = [json.loads(line) for line in sample_lines()]
    out: list[bytes] = []
    late: list[bytes] = []
    for k, record in enumerate(records):
        record["ts"] = T0 + 250 * k
        label = {"id": record["id"], "ts": record["ts"] + 2000, "label": record.pop("label")}
        out.append(json.dumps(record).encode())
        if k % 11 == 5:
            continue  # never labeled: expires
        if k < WAIT_FIRST:
            label["ts"] = T0 + 250 * LATE_AT
            late.append(json.dumps(label).encode())
        else:
            out.append(json.dumps(label).encode())
        if k % 500 == 7:
            out.append(json.dumps({"id": f"nobody-{k}", "ts": record["ts"], "label": "A"}).encode())
        if k == LATE_AT:
            out.extend(late)
    return out


@dataclass(frozen=True, slots=True)
class JoinJob(Job):
    shards: int = 1

    def env(self) -> dict[str, str]:
        env = Job.env(self)
        env["CONFUSION_LABEL_TTL"] = "15m"
        env["CONFUSION_JOIN_SHARDS"] = str(self.shards)
        env["CONFUSION_WINDOW_SIZE"] = "500"
        return env


@pytest.fixture(scope="module")
def input_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("join-input") / "mixed.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in mixed_lines()))
    return path


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, input_path: Path
) -> tuple[FlowOutput, int]:
    job = JoinJob(tmp_path_factory.mktemp("uninterrupted"), input_path)
    job.init()
    job.run()
    output = job.output_now()
    assert output.documents and all("join" in d for d in output.documents)
    return output, _size(job.output)


@pytest.mark.parametrize(("workers", "shards"), [(1, 1), (2, 1), (2, 3)])
def test_sigkill_with_halves_waiting_then_resume(
    tmp_path: Path,
    input_path: Path,
    uninterrupted: tuple[FlowOutput, int],
    workers: int,
    shards: int,
) -> None:
    full, full_size = uninterrupted
    last = {d["model"]: d for d in full.documents}
    assert all(d["join"]["expired"] > 0 for d in last.values())
    assert any("has no prediction" in letter["reason"] for letter in full.dead_letters)
    lines = len(mixed_lines())
    job = JoinJob(tmp_path, input_path, shards)
    job.init()
    process = job.start(workers, gate=int(0.38 * lines))
    deadline = time.monotonic() + TIMEOUT_S
    while _size(job.output) < 0.3 * full_size or committed_epoch(job.recovery) is None:
        assert process.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "the job's output did not grow"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed = job.output_now().documents
    assert killed and killed[-1]["join"]["waiting"] >= WAIT_FIRST * 0.8  # halves were waiting
    # The waiting halves are in segment files beside the partitions (a base, maybe deltas).
    for shard in range(shards):
        segments = sorted(p.name for p in (job.recovery / "join" / f"shard-{shard}").iterdir())
        assert segments and segments[0].endswith(".base"), segments

    job.run(workers)
    resumed = job.output_now()
    keys = Counter((d["model"], d["seq"]) for d in resumed.documents)
    assert [key for key, n in keys.items() if n > 1] == [], "documents written twice"
    expected = {(d["model"], d["seq"]): d for d in full.documents}
    assert_documents_match(resumed.documents, expected)
    assert [d["join"] for d in resumed.documents] == [
        expected[(d["model"], d["seq"])]["join"] for d in resumed.documents
    ]
    assert Counter(map(repr, resumed.dead_letters)) == Counter(map(repr, full.dead_letters))
