"""Prepare a pod for ``python -m bytewax.run``: the peers' hostfile and the recovery partitions.

Run by the StatefulSet's init container (``python -m flows.tools.recovery_init``) before every pod
start, on every pod at once (``podManagementPolicy: Parallel``), so each step is idempotent and
safe to race:

- the hostfile lists one ``host:port`` per process, ``BYTEWAX_PEER_ADDRESS`` formatted with
  ``i = 0 .. BYTEWAX_REPLICAS - 1``; Bytewax's CLI reads it through ``BYTEWAX_HOSTFILE_PATH``;
- the recovery partitions are created only when ``BYTEWAX_RECOVERY_DIRECTORY`` does not hold
  them yet: all of them in a private sibling directory, which is then renamed into place. A
  rename is atomic, so a racing pod either sees the whole set or none of it, and a set that is
  already there is never touched. A partial set is an error, never "completed": a fresh
  partition next to old ones would silently resume some state and drop the rest.

The directory is shared by every pod (one ReadWriteMany volume): Bytewax lets each partition be
written by one worker of the cluster whichever pod that is, so any number of pods up to
``BYTEWAX_RECOVERY_PARTS`` workers can resume the same checkpoint (see docs/kubernetes.md).
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PART_FILE = re.compile(r"^part-(\d+)\.sqlite3$")


class InitError(Exception):
    """The pod cannot start as configured; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class PartitionSet:
    """The recovery partitions found in a directory."""

    indices: frozenset[int]

    @property
    def complete(self) -> bool:
        return bool(self.indices) and self.indices == frozenset(range(len(self.indices)))

    def describe(self) -> str:
        return ", ".join(f"part-{i}" for i in sorted(self.indices)) or "none"


def found_partitions(directory: Path) -> PartitionSet:
    """The partition indices in ``directory`` (files ``part-N.sqlite3``; WAL files ignored)."""
    if not directory.is_dir():
        return PartitionSet(frozenset())
    indices = {int(m.group(1)) for m in map(PART_FILE.match, os.listdir(directory)) if m}
    return PartitionSet(frozenset(indices))


def peer_addresses(template: str, replicas: int) -> list[str]:
    """``template`` formatted with ``i`` for every process, e.g. ``"sts-{i}.svc.ns:9999"``."""
    if replicas < 1:
        raise InitError(f"BYTEWAX_REPLICAS must be >= 1, got {replicas}")
    if "{i}" not in template:
        raise InitError(
            f"BYTEWAX_PEER_ADDRESS must contain {{i}} (the pod ordinal), got {template!r}"
        )
    return [template.format(i=i) for i in range(replicas)]


def write_hostfile(path: Path, addresses: Sequence[str]) -> None:
    """Write one address per line, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("".join(f"{address}\n" for address in addresses), encoding="utf-8")
    tmp.replace(path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_partitions(directory: Path, count: int) -> str:
    """Create ``count`` recovery partitions in ``directory`` unless a complete set is there.

    Returns what was done, as one line for the log. Raises `InitError` for a partial set.
    """
    if count < 1:
        raise InitError(f"BYTEWAX_RECOVERY_PARTS must be >= 1, got {count}")
    found = found_partitions(directory)
    if found.indices:
        return _existing(directory, found, count)
    if directory.is_dir() and os.path.ismount(directory):
        raise InitError(
            f"{directory} is a mount point; put the recovery directory one level "
            "below the volume's mount so it can be created atomically"
        )
    from bytewax.recovery import init_db_dir  # only this step needs Bytewax loaded

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.init-{uuid.uuid4().hex[:12]}")
    staging.mkdir()
    try:
        init_db_dir(staging, count)  # type: ignore[no-untyped-call]  # untyped stub
        _fsync_dir(staging)
        try:
            # Replaces only a missing or empty directory; a racing pod that won leaves ours out.
            os.rename(staging, directory)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            return _existing(directory, found_partitions(directory), count)
        _fsync_dir(directory.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return f"created {count} recovery partitions in {directory}"


def _existing(directory: Path, found: PartitionSet, count: int) -> str:
    if not found.indices:
        raise InitError(
            f"{directory} holds other files but no recovery partitions; point "
            "BYTEWAX_RECOVERY_DIRECTORY at a missing or empty directory"
        )
    if not found.complete:
        raise InitError(
            f"{directory} holds an incomplete set of recovery partitions ({found.describe()}); "
            "Bytewax cannot resume from it and a fresh partition would silently lose state. "
            "Restore the missing part-N.sqlite3 files, or reset the state (docs/kubernetes.md)"
        )
    have = len(found.indices)
    if have != count:
        return (
            f"kept {have} recovery partitions in {directory}; BYTEWAX_RECOVERY_PARTS={count} "
            "only applies to a new directory (the count is fixed once created)"
        )
    return f"kept {have} recovery partitions in {directory}"


def check_ordinal(env: Mapping[str, str], replicas: int) -> None:
    """Refuse a pod whose ordinal is not in the hostfile (``kubectl scale`` without config)."""
    pod, sts = env.get("BYTEWAX_POD_NAME"), env.get("BYTEWAX_STATEFULSET_NAME")
    if not pod or not sts or not pod.startswith(f"{sts}-"):
        return
    ordinal = pod.removeprefix(f"{sts}-")
    if ordinal.isdigit() and int(ordinal) >= replicas:
        raise InitError(
            f"pod {pod} has ordinal {ordinal} but BYTEWAX_REPLICAS={replicas}: the "
            "StatefulSet's replicas and BYTEWAX_REPLICAS must change together "
            "(see docs/kubernetes.md, Scale)"
        )


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InitError(f"{name} must be an integer, got {value!r}") from None


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.tools.recovery_init",
        description="Write the Bytewax hostfile and create missing recovery partitions. Each "
        "option defaults to the environment variable named in its help.",
    )
    parser.add_argument(
        "--hostfile",
        type=Path,
        default=env.get("BYTEWAX_HOSTFILE_PATH"),
        help="where to write the peers [BYTEWAX_HOSTFILE_PATH]",
    )
    parser.add_argument(
        "--peer-address",
        default=env.get("BYTEWAX_PEER_ADDRESS"),
        help="host:port of process {i} [BYTEWAX_PEER_ADDRESS]",
    )
    parser.add_argument(
        "--recovery-directory",
        type=Path,
        default=env.get("BYTEWAX_RECOVERY_DIRECTORY"),
        help="recovery partitions [BYTEWAX_RECOVERY_DIRECTORY]",
    )
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = _parser(env).parse_args(argv)
    try:
        if args.hostfile is not None:
            replicas = _env_int(env, "BYTEWAX_REPLICAS")
            if replicas is None or not args.peer_address:
                raise InitError("a hostfile needs BYTEWAX_REPLICAS and BYTEWAX_PEER_ADDRESS")
            check_ordinal(env, replicas)
            addresses = peer_addresses(args.peer_address, replicas)
            write_hostfile(args.hostfile, addresses)
            print(f"recovery_init: wrote {len(addresses)} peers to {args.hostfile}")
        if args.recovery_directory is not None:
            parts = _env_int(env, "BYTEWAX_RECOVERY_PARTS")
            if parts is None:
                raise InitError(
                    "BYTEWAX_RECOVERY_PARTS is not set: how many partitions, at "
                    "least the most workers the job will ever run"
                )
            print(f"recovery_init: {ensure_partitions(args.recovery_directory, parts)}")
    except InitError as exc:
        print(f"recovery_init: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
