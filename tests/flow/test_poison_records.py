"""Records at the edge of the contract: the job must neither crash nor lose them.

Each case puts one such record between good ones. A crash here is a poison pill: after a restart
the job replays the same record and crashes again, so the whole stream stops.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.flow.runner import FlowOutput, run_batches
from tests.reference import compare, expected_run
from tests.streams import START_MS, dumps


def good(i: int) -> bytes:
    return dumps(
        {
            "id": f"g{i}",
            "ts": START_MS + i,
            "label": "a",
            "predictions": {"m": "a" if i % 2 else "b"},
        }
    )


POISON = {
    "ts-offset-before-year-1": (
        b'{"id": "p", "ts": "0001-01-01T00:00:00+01:00", "label": "a", "predictions": {"m": "a"}}'
    ),
    "ts-offset-after-year-9999": (
        b'{"id": "p", "ts": "9999-12-31T23:59:59-01:00", "label": "a", "predictions": {"m": "a"}}'
    ),
    "ts-epoch-ms-of-year-1": (
        b'{"id": "p", "ts": -62135596800000, "label": "a", "predictions": {"m": "a"}}'
    ),
    "id-beyond-64-bits": (
        b'{"id": 18446744073709551616, "ts": 1795341600000, "label": "a", '
        b'"predictions": {"m": "a"}}'
    ),
    "label-beyond-64-bits": (
        b'{"id": "p", "ts": 1795341600000, "label": 1180591620717411303424, '
        b'"predictions": {"m": 1180591620717411303424}}'
    ),
    "lone-surrogate-label": (
        b'{"id": "p", "ts": 1795341600000, "label": "\\ud800", "predictions": {"m": "a"}}'
    ),
    "lone-surrogate-id": (
        b'{"id": "\\udfff", "ts": 1795341600000, "label": "a", "predictions": {"m": "a"}}'
    ),
    "lone-surrogate-model-name": (
        b'{"id": "p", "ts": 1795341600000, "label": "a", "predictions": {"m": "a", "\\ud83d": "a"}}'
    ),
    "lone-surrogate-predicted-label": (
        b'{"id": "p", "ts": 1795341600000, "label": "a", "predictions": {"m": "a", '
        b'"n": {"\\ud83d": 0.9, "a": 0.1}}}'
    ),
}


# Integers beyond 64 bits are valid JSON and the contract accepts integer ids and labels, but
# Elasticsearch's long and orjson stop at 64 bits: refusing such a record, with a reason, is as
# acceptable as counting it.
MAY_BE_REFUSED = {"id-beyond-64-bits", "label-beyond-64-bits"}


def _letters(output: FlowOutput) -> Counter[tuple[int, str, str | None]]:
    return Counter(
        (d["source"]["position"], d["scope"], d.get("model")) for d in output.dead_letters
    )


@pytest.mark.parametrize("kind", sorted(POISON))
def test_edge_record_is_counted_or_dead_lettered_never_fatal(tmp_path: Path, kind: str) -> None:
    lines = [good(i) for i in range(5)] + [POISON[kind]] + [good(i) for i in range(5, 10)]
    fallback = [START_MS] * len(lines)
    output = run_batches(lines, fallback, tmp_path, window_size=3, emit_every=2, sizes=[4])

    reference = expected_run(lines, window_size=3, emit_every=2, fallback_ts=fallback)
    diffs = compare(output.documents, reference.documents)
    letters = Counter((r.index + 1, r.scope, r.model) for r in reference.rejections)
    if kind in MAY_BE_REFUSED and (diffs or _letters(output) != letters):
        without = expected_run(
            lines[:5] + lines[6:], window_size=3, emit_every=2, fallback_ts=fallback[1:]
        )
        diffs = compare(output.documents, without.documents)
        letters = Counter({(6, "record", None): 1})
    assert not diffs, "\n".join(diffs)
    assert _letters(output) == letters
