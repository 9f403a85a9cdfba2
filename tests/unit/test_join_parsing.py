"""Parsing with the join on: halves come apart, and the batch timestamp path agrees with the
record-by-record one."""

from __future__ import annotations

import random

import pytest

from flows.parsing.batches import RawBatch, _timestamps, parse_batch
from flows.parsing.checks import RecordError, timestamp_ms
from flows.parsing.halves import shard_of


def parse(values: list[bytes], join: bool = True):  # type: ignore[no-untyped-def]
    n = len(values)
    return parse_batch(RawBatch(values, [7] * n, "o", list(range(1, n + 1))), join=join)


def test_halves_come_apart_in_read_order_with_their_score_maps() -> None:
    parsed = parse(
        [
            b'{"id":"a","ts":1000,"predictions":{"m1":{"A":0.7,"B":0.3},"m2":"B"}}',
            b'{"id":"b","ts":2000,"label":"A"}',
            b'{"id":"c","ts":3000,"label":"A","predictions":{"m1":"A"}}',
            b'{"id":"e","predictions":{"m1":"A"},"extra":1}',
            b'{"id":5,"label":7}',
            b'{"id":"d","ts":"bad","label":"A"}',
        ]
    )
    halves = parsed.halves
    assert halves is not None
    assert list(parsed.by_model) == ["m1"] and parsed.by_model["m1"].ids == ["c"]
    p = halves.predictions
    assert p.ids == ["a", "e"] and p.ts.tolist() == [1000, 7]
    assert p.models["m1"].scores is not None and p.models["m1"].score_keys == ["A", "B"]
    assert p.models["m2"].pred.tolist()[1] == -1  # "e" has no m2 entry
    labels = halves.labels
    assert labels.ids == ["b", 5] and labels.labels == ["A", "7"]
    assert labels.ts.tolist() == [2000, 7]
    assert halves.batch_max == 2000
    # newest time among the halves read so far, in read order (a, b, e, 5)
    assert p.run_max.tolist() == [1000, 2000] and labels.run_max.tolist() == [2000, 2000]
    assert [letter.reason for letter in parsed.dead] == ["'ts' is not an RFC 3339 timestamp: 'bad'"]


def test_without_the_join_halves_are_refused_as_before() -> None:
    parsed = parse([b'{"id":"a","predictions":{"m":"A"}}', b'{"id":"a","label":"A"}'], False)
    assert parsed.halves is None and parsed.by_model == {}
    assert [d.reason for d in parsed.dead] == ["missing 'label'", "missing 'predictions'"]


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29T10:00:00.250Z",
        "2026-02-29T10:00:00.250Z",
        "2026-11-22T24:00:00.000Z",
        "2026-11-22T23:59:60.000Z",
        "0000-01-01T00:00:00.000Z",
        "0001-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
    ],
)
def test_the_batch_timestamp_path_agrees_with_timestamp_ms(text: str) -> None:
    batch = ["2026-11-22T10:00:00.250Z", text]
    ts, bad = _timestamps(list(batch), [0, 0])
    try:
        want = timestamp_ms(text)
    except RecordError:
        assert bad.tolist() == [False, True]
    else:
        assert ts.tolist() == [1795341600250, want] and not bad.any()


def test_random_dates_agree() -> None:
    rng = random.Random(12)
    texts = [
        f"{rng.randint(1, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}."
        f"{rng.randint(0, 999):03d}Z"
        for _ in range(2000)
    ]
    ts, bad = _timestamps(list(texts), [0] * len(texts))
    assert not bad.any()
    assert ts.tolist() == [timestamp_ms(t) for t in texts]


def test_shards_are_stable_and_tell_types_apart() -> None:
    assert shard_of("r-1", 8) == shard_of("r-1", 8)
    assert {shard_of(i, 4) for i in range(100)} == {0, 1, 2, 3}
    assert shard_of(1, 1 << 30) != shard_of("1", 1 << 30)  # 1 and "1" are other ids
