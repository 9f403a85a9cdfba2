"""What the outage drills share: reading the job's log lines as they come, and sampling the job's
memory and lag while a dependency is away.

Everything waits on states the job shows (a log line, a document, a committed offset), never on
a fixed sleep.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from tests.integration.pipeline import REPO, Job, wait_for

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ")
# A line of the job's own logger: timestamp, level, then the logger's name.
JOB_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"confusion-stream: confusion\.[a-z_.]+: "
)


def lines_with(job: Job, text: str) -> list[str]:
    return [line for line in job.output().splitlines() if text in line]


def wait_line(job: Job, text: str, n: int, timeout: float) -> str:
    """Wait until the job's log holds ``n`` lines containing ``text``; return the n-th."""

    def seen() -> bool:
        job.assert_alive()
        return len(lines_with(job, text)) >= n

    wait_for(f"log line #{n} {text!r}", seen, timeout, every=0.1)
    return lines_with(job, text)[n - 1]


def stamp_of(line: str) -> float:
    """The epoch seconds of a log line's timestamp."""
    match = STAMP.match(line)
    assert match, f"log line without a timestamp: {line!r}"
    return datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()


def untimestamped(output: str) -> list[str]:
    """The job's own log lines (``confusion-stream: confusion.x:``) lacking the timestamp."""
    return [
        line
        for line in output.splitlines()
        if "confusion-stream: confusion." in line and not JOB_LINE.match(line)
    ]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Samples:
    rss_kib: list[int] = field(default_factory=list)
    lag: list[int] = field(default_factory=list)

    @property
    def worst_rss_mib(self) -> float:
        return max(self.rss_kib, default=0) / 1024

    @property
    def worst_lag(self) -> int:
        return max(self.lag, default=0)


class Sampler(threading.Thread):
    """Every ``every`` s: the job's RSS (all its processes) and its lag, the records in the topic
    past the offsets its snapshots committed (``CONFUSION_KAFKA_GROUP``)."""

    def __init__(
        self, job: Job, bootstrap: str, group: str, topic: str, partitions: int, every: float = 0.5
    ) -> None:
        super().__init__(daemon=True)
        self.job, self.every = job, every
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        self.parts = [TopicPartition(topic, p) for p in range(partitions)]
        self.samples = Samples()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.samples.rss_kib.append(sum(rss_kib(p.pid) for p in self.job.procs))
            try:
                committed = self.consumer.committed(self.parts, 5)
                ends = [self.consumer.get_watermark_offsets(tp, 5)[1] for tp in self.parts]
            except Exception:  # the broker may be away in a Kafka drill: no sample then
                continue
            self.samples.lag.append(
                sum(end - max(tp.offset, 0) for end, tp in zip(ends, committed, strict=True))
            )

    def stop(self) -> Samples:
        self._halt.set()
        if self.is_alive():
            self.join(10)
        self.consumer.close()
        return self.samples


def services(*args: str, timeout: float = 180.0) -> str:
    """``scripts/services <args>`` for the servers this session uses; its stdout."""
    done = subprocess.run(
        [str(REPO / "scripts" / "services"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"scripts/services {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def pause_between(start: float, end: float) -> float:
    return max(end - start, 0.0)


def now() -> float:
    return time.time()
