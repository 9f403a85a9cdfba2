"""The real job on hostile records: exit 0, every line counted or dead-lettered exactly once,
memory bounded.

`tests.hostile` generates the records (valid grammar plus mutations of types, nesting, numbers,
encodings, sizes, duplicate keys, line breaks). CI runs the seeds in `RUNS`: 12,000 records each,
24,000 per suite run, one with count windows at batch size 1000 and one with time windows, an
ensemble and batch size 7. The job runs as users run it (``python -m bytewax.run
flows.confusion`` with ``CONFUSION_SOURCE=file``) in a subprocess of a small wrapper that reports
its peak resident memory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flows.limits import MAX_RECORD_BYTES
from tests.hostile import hostile_lines

REPO = Path(__file__).resolve().parents[2]
RECORDS = 12_000
MEMORY_BOUND_KB = 1_500_000  # peak RSS; a clean run of this size takes about 150 MB
RUNS = {
    "seed-20261-count-batch-1000": (20261, {"CONFUSION_WINDOW_SIZE": "500"}),
    "seed-20262-time-ensemble-batch-7": (
        20262,
        {
            "CONFUSION_WINDOW_KIND": "time",
            "CONFUSION_WINDOW_DURATION": "5m",
            "CONFUSION_BATCH_SIZE": "7",
            "CONFUSION_ENSEMBLE_WEIGHTS": "m1=2,m2=2,m3=1",
        },
    ),
}
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'peak-rss-kb {peak}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)
_TOTALS = re.compile(r"([\d,]+) records .* rejected ([\d,]+) records \+ ([\d,]+) entries")


def file_lines(data: bytes) -> list[bytes]:
    """The lines as the file source reads them: split at LF only (bytes.splitlines would also
    split at CR), CR/LF stripped from the end."""
    return [line.rstrip(b"\r\n") for line in data.removesuffix(b"\n").split(b"\n")]


@pytest.mark.parametrize("run", list(RUNS), ids=list(RUNS))
def test_hostile_records_are_each_counted_or_dead_lettered_once(run: str, tmp_path: Path) -> None:
    seed, extra = RUNS[run]
    data = b"".join(line + b"\n" for line in hostile_lines(RECORDS, seed))
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(data)
    lines = file_lines(data)
    records = {i + 1: line for i, line in enumerate(lines) if line.strip(b" \t\r\n")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFUSION_")}
    env.update(
        {
            "CONFUSION_SOURCE": "file",
            "CONFUSION_INPUT": str(path),
            "CONFUSION_OUTPUT": str(tmp_path / "docs.jsonl"),
            "CONFUSION_DEAD_LETTER_PATH": str(tmp_path / "dead.jsonl"),
            "CONFUSION_PROGRESS": "off",
            "CONFUSION_SUMMARY": "true",
            "CONFUSION_EMIT_EVERY": "1000",
            **extra,
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "bytewax.run", "flows.confusion"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=600,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-3000:]
    peak = int(re.findall(r"peak-rss-kb (\d+)", stderr)[-1])
    assert peak < MEMORY_BOUND_KB, f"peak RSS {peak} kB"

    totals = _TOTALS.search(stderr)
    assert totals, stderr[-3000:]
    counted, rejected, entries = (int(g.replace(",", "")) for g in totals.groups())
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
    whole = [d for d in dead if d["scope"] == "record"]
    positions = Counter(d["source"]["position"] for d in whole)
    assert max(positions.values()) == 1, "a line dead-lettered twice"
    assert set(positions) <= set(records), "a dead letter for a blank or unknown line"
    assert counted + rejected == len(records)  # every non-blank line once, counted or refused
    assert rejected == len(whole)
    assert entries == len(dead) - len(whole)
    for letter in dead:  # each dead letter carries its own line (class-limit ones: the entry)
        raw = (
            letter["raw"].encode("utf-8", "surrogatepass")
            if "raw" in letter
            else bytes.fromhex(letter["raw_hex"])
        )
        line = records[letter["source"]["position"]]
        if "CONFUSION_MAX_RECORD_BYTES" in letter["reason"]:  # cut at the limit + 1 byte
            assert len(line) > MAX_RECORD_BYTES and raw == line[: MAX_RECORD_BYTES + 1]
        elif "CONFUSION_MAX_CLASSES" not in letter["reason"]:
            assert raw == line, letter
    reasons = Counter(d["reason"].split(":")[0].split(" (")[0] for d in dead)
    assert len(reasons) > 20, reasons  # the mutations reach many different refusals
    docs = [json.loads(line) for line in (tmp_path / "docs.jsonl").read_bytes().splitlines()]
    assert {d["model"] for d in docs} >= {"m1", "m2", "m3", "wide"}
    assert all(len(d["labels"]) <= 1000 for d in docs)
