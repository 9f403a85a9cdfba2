"""A look at the recovery store before Bytewax opens it: a damaged one stops the job, by name.

Bytewax itself refuses a store with a missing partition (``MissingPartitionsError ... can't
resume``) and panics on a truncated one (``database disk image is malformed``), naming neither
the file nor a way out, and it writes a fresh schema into a zero-byte file before it refuses. So
the job checks first, read-only, and stops with the file and what to do. Never "start from
zero": a fresh store would resume the Kafka source at ``CONFUSION_KAFKA_START`` and count records
twice or skip them without a word.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path

from flows.errors import ConfigError

PART_FILE = re.compile(r"^part-(\d+)\.sqlite3$")
_WHAT_TO_DO = (
    "The job did not start: resuming without this partition would lose or repeat state. "
    "Restore the file from a backup (Bytewax's -b backups, a volume snapshot), or, to start over "
    "knowingly (the Kafka source then starts at CONFUSION_KAFKA_START), move the directory "
    "away and create a new one with `python -m bytewax.recovery {dir} {count}`."
)


class RecoveryStoreError(ConfigError):
    """The recovery store cannot be resumed; the message names the file and what to do."""


def _cli_value(
    argv: Sequence[str], short: str, long: str, variable: str, env: Mapping[str, str] | None
) -> str | None:
    """An option of a ``python -m bytewax.run`` command line (``-x V``, ``--long V`` or
    ``--long=V``, the last one winning), else its environment variable, as Bytewax reads it."""
    value: str | None = None
    for i, arg in enumerate(argv):
        if arg in (short, long) and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(long + "="):
            value = arg.split("=", 1)[1]
    if value is None:
        value = (os.environ if env is None else env).get(variable)
    return value


def recovery_dir_from(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Path | None:
    """The ``-r``/``--recovery-directory`` of a ``python -m bytewax.run`` command line (or
    ``BYTEWAX_RECOVERY_DIRECTORY``), as Bytewax's CLI reads it; None without recovery."""
    value = _cli_value(argv, "-r", "--recovery-directory", "BYTEWAX_RECOVERY_DIRECTORY", env)
    return Path(value) if value else None


def backup_interval_from(argv: Sequence[str], env: Mapping[str, str] | None = None) -> float:
    """The ``-b``/``--backup-interval`` seconds of a ``bytewax.run`` command line (or
    ``BYTEWAX_RECOVERY_BACKUP_INTERVAL``); 0 when absent or not a number (Bytewax refuses it)."""
    value = _cli_value(argv, "-b", "--backup-interval", "BYTEWAX_RECOVERY_BACKUP_INTERVAL", env)
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _fail(path: Path, what: str, directory: Path, count: int | str) -> RecoveryStoreError:
    return RecoveryStoreError(
        f"recovery store damaged: {path} {what}. " + _WHAT_TO_DO.format(dir=directory, count=count)
    )


def _partition(path: Path, directory: Path) -> tuple[int, int]:
    """(part_index, part_count) recorded in one partition file, read-only."""
    if path.stat().st_size == 0:
        raise _fail(path, "is empty (truncated to 0 bytes)", directory, "N")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            check = db.execute("PRAGMA quick_check(1)").fetchone()
            rows = db.execute("SELECT part_index, part_count FROM parts").fetchall()
    except sqlite3.DatabaseError as exc:
        raise _fail(
            path, f"cannot be read as a recovery partition ({exc})", directory, "N"
        ) from None
    if check is None or check[0] != "ok":
        raise _fail(path, f"is corrupt ({check[0] if check else 'no answer'})", directory, "N")
    if len(rows) != 1:
        raise _fail(path, "holds no partition record", directory, "N")
    return int(rows[0][0]), int(rows[0][1])


def check_recovery_store(directory: Path) -> int:
    """Raise `RecoveryStoreError` unless ``directory`` holds a whole, readable set of partition
    files; return their count."""
    if not directory.is_dir():
        raise RecoveryStoreError(
            f"recovery directory {directory} does not exist; create it with `mkdir -p "
            f"{directory} && python -m bytewax.recovery {directory} N` (N partitions, at least "
            "the number of workers), or restore it from a backup"
        )
    files = {
        int(m.group(1)): directory / name
        for name in os.listdir(directory)
        if (m := PART_FILE.match(name))
    }
    if not files:
        raise RecoveryStoreError(
            f"recovery store damaged: {directory} holds no partition file (part-N.sqlite3). "
            + _WHAT_TO_DO.format(dir=directory, count="N")
        )
    counts: dict[int, int] = {}
    for index, path in sorted(files.items()):
        part_index, part_count = _partition(path, directory)
        if part_index != index:
            raise _fail(path, f"records partition {part_index}, not {index}", directory, part_count)
        counts[index] = part_count
    count = max(counts.values())
    for index, path in sorted(files.items()):
        if counts[index] != count:
            raise _fail(
                path,
                f"belongs to a set of {counts[index]} partitions, not {count}",
                directory,
                count,
            )
    missing = sorted(set(range(count)) - set(files))
    if missing:
        raise _fail(
            directory / f"part-{missing[0]}.sqlite3",
            f"is missing ({len(missing)} of {count} partitions missing)",
            directory,
            count,
        )
    return count
