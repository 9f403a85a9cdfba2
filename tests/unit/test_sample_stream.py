"""The sample stream that tests and benchmarks share has the shape they rely on."""

from __future__ import annotations

import orjson

from flows.demo import sample_lines


def _predicted(value: object) -> object:
    if isinstance(value, dict):
        return max(sorted(value), key=value.__getitem__)
    return value


def _accuracy(records: list[dict[str, object]], model: str) -> float:
    right = sum(
        _predicted(r["predictions"][model]) == r["label"]  # type: ignore[index]
        for r in records
    )
    return right / len(records)


def test_sample_has_the_documented_shape_and_drift() -> None:
    lines = sample_lines()
    records = [orjson.loads(line) for line in lines]
    assert len(records) == 6000
    assert len({r["id"] for r in records}) == 6000
    assert {r["label"] for r in records} == {"A", "B"}
    assert all(set(r["predictions"]) == {"model1", "model2", "model3"} for r in records)
    assert all(
        isinstance(r["predictions"]["model1"], dict)
        and isinstance(r["predictions"]["model2"], dict)
        and isinstance(r["predictions"]["model3"], str)
        for r in records
    )
    assert records[0]["ts"] == "2026-11-22T10:00:00.250Z"
    assert records[-1]["ts"] == "2026-11-22T10:25:00.000Z"
    early, late = records[:3000], records[3000:]
    assert _accuracy(early, "model2") > 0.85 > 0.65 > _accuracy(late, "model2")
    for model in ("model1", "model3"):
        assert abs(_accuracy(early, model) - _accuracy(late, model)) < 0.05


def test_sample_depends_only_on_its_seed() -> None:
    assert sample_lines() == sample_lines()
    assert sample_lines(seed=8) != sample_lines()
    assert sample_lines(total=100) == sample_lines(total=100)
