"""The decode-only bound: the project's msgspec `Wire` decoder over a JSON-lines file, nothing else.

What the job cannot beat: reading the file and `flows.parsing.fast_path.decode_batch` on batches of
``--batch`` lines (the job's CONFUSION_BATCH_SIZE), the C decode that checks the wire types. No
validation, no window, no documents. Run as its own process, like the job, so both pay start-up.

    python bench/decode_only.py FILE [--batch 1000]

prints ``{"records", "seconds", "cpu"}``: wall and CPU time from file open to end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.parsing.fast_path import decode_batch


def decode_file(path: Path, batch: int) -> int:
    """Decode every line of ``path`` in batches; return how many records decoded."""
    records = 0
    with path.open("rb") as f:
        lines = f.read().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    for lo in range(0, len(lines), batch):
        decoded = decode_batch(lines[lo : lo + batch])
        records += sum(w is not None for w in decoded)
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--batch", type=int, default=1000)
    args = p.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    records = decode_file(args.file, args.batch)
    print(
        json.dumps(
            {
                "records": records,
                "seconds": time.perf_counter() - start,
                "cpu": time.process_time() - cpu,
            }
        )
    )


if __name__ == "__main__":
    main()
