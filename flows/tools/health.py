"""The health probe: is the dataflow still polling its source?

Bytewax serves no health endpoint, so the job proves it is alive by touching
``CONFUSION_HEARTBEAT_FILE`` on every source poll (`flows.telemetry.Heartbeat`, at most once a
second, idle polls included). A stuck dataflow stops polling and the file goes stale::

    python -m flows.tools.health --max-age 120

exits 0 while the file was touched within ``--max-age`` seconds, and 1 with a one-line reason
otherwise. A heartbeat older than the container itself (the file outlives a container restart
in the pod's ``emptyDir``) counts as missing, so a restarted container is not called healthy
on its predecessor's word. Only the standard library is imported: the kubelet runs this every
few seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT_ENV = "CONFUSION_HEARTBEAT_FILE"
OK, UNHEALTHY, MISCONFIGURED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the probe found: exit code and the one line the kubelet records."""

    code: int
    reason: str


def judge(
    path: Path, mtime: float | None, now: float, max_age: float, started_at: float | None = None
) -> Verdict:
    """Decide from the heartbeat's modification time alone (pure; see `check` for the I/O).

    Args:
        path: the heartbeat file, for the message.
        mtime: its modification time (epoch seconds), None when it does not exist.
        now: the current time (epoch seconds).
        max_age: the oldest heartbeat that still counts as alive, in seconds.
        started_at: when this container started; an older heartbeat was left by a predecessor.
    """
    if mtime is None:
        return Verdict(
            UNHEALTHY,
            f"no heartbeat at {path} yet: the dataflow has not polled its source since it started",
        )
    age = max(0.0, now - mtime)
    # One second of slack: btime and starttime are coarse, and the kernel's mtime can be too.
    if started_at is not None and mtime < started_at - 1.0:
        return Verdict(
            UNHEALTHY,
            f"heartbeat at {path} ({age:.0f}s old) predates this "
            "container: the dataflow has not polled its source yet",
        )
    if age > max_age:
        return Verdict(
            UNHEALTHY,
            f"heartbeat at {path} is {age:.1f}s old (limit {max_age:g}s): "
            "the dataflow has stopped polling its source",
        )
    return Verdict(OK, f"heartbeat {age:.1f}s old")


def process_start_time(pid: int, proc: Path = Path("/proc")) -> float | None:
    """When process ``pid`` started (epoch seconds), from procfs; None where that is unknown.

    In a container PID 1 is the container's own first process, so its start is the container's.
    """
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        # Field 22 (starttime, clock ticks since boot) follows the parenthesised command name,
        # which may itself hold spaces.
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def check(path: Path, max_age: float, since_pid: int | None = 1) -> Verdict:
    """Judge the heartbeat at ``path`` now; ``since_pid`` names the process it must not predate."""
    try:
        mtime: float | None = path.stat().st_mtime
    except FileNotFoundError:
        mtime = None
    started_at = process_start_time(since_pid) if since_pid else None
    return judge(path, mtime, time.time(), max_age, started_at)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.tools.health",
        description="Exit 0 if the dataflow polled its source recently, 1 (with the reason) if "
        "not, 2 if there is nothing to check.",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=60.0,
        help="oldest heartbeat, in seconds, that still counts (default 60)",
    )
    parser.add_argument(
        "--file", type=Path, default=None, help=f"heartbeat file (default: ${HEARTBEAT_ENV})"
    )
    parser.add_argument(
        "--since-pid",
        type=int,
        default=1,
        help="a heartbeat older than this process is stale (default 1, the "
        "container's first process; 0 turns the check off)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.file or (Path(os.environ[HEARTBEAT_ENV]) if os.environ.get(HEARTBEAT_ENV) else None)
    if path is None:
        print(
            f"{HEARTBEAT_ENV} is not set and --file is not given: nothing to check", file=sys.stderr
        )
        return MISCONFIGURED
    if args.max_age <= 0:
        print("--max-age must be > 0", file=sys.stderr)
        return MISCONFIGURED
    verdict = check(path, args.max_age, args.since_pid or None)
    print(verdict.reason, file=sys.stdout if verdict.code == OK else sys.stderr)
    return verdict.code


if __name__ == "__main__":
    sys.exit(main())
