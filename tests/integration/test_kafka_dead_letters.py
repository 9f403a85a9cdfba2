"""Rejected records go to the dead-letter topic with the original bytes and why, as headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main
from prometheus_client import REGISTRY

from flows.confusion import build_flow
from flows.settings import Settings
from tests.integration.pipeline import TopicFactory, produce, read_topic, sample_lines

BAD_JSON = b'{"id": "bad-1", "label": "A", "predictions": {'
NO_LABEL = b'{"id": "bad-2", "predictions": {"model1": "A"}}'
BAD_ENTRY = b'{"id": "bad-3", "label": "A", "predictions": {"model1": "A", "model2": []}}'


def run_job(bootstrap: str, topic: str, dlq: str, tmp: Path, **extra: Any) -> list[dict[str, Any]]:
    """Run the whole flow in-process until the end of the topic; its documents."""
    out = tmp / "docs.jsonl"
    settings = Settings(
        source="kafka",
        kafka_bootstrap=bootstrap,
        kafka_topic=topic,
        kafka_stop_at_end=True,
        dlq_topic=dlq,
        sink="jsonl",
        output=out,
        window_size=100,
        emit_every=100,
        progress="off",
        summary=False,
        **extra,
    )
    run_main(build_flow(settings))
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def test_rejections_reach_the_dead_letter_topic_with_headers(
    kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    source, dlq = topic(), topic()
    good = sample_lines()[:200]
    values: list[bytes | None] = [*good[:100], BAD_JSON, NO_LABEL, BAD_ENTRY, None, *good[100:]]
    produce(kafka_bootstrap, source, values)

    docs = run_job(kafka_bootstrap, source, dlq, tmp_path)

    letters = read_topic(kafka_bootstrap, dlq)
    headers = [{k: (v or b"").decode() for k, v in m.headers() or []} for m in letters]
    assert [m.value() or b"" for m in letters] == [BAD_JSON, NO_LABEL, BAD_ENTRY, b""]
    assert [h["source_offset"] for h in headers] == ["100", "101", "102", "103"]
    assert {h["source_topic"] for h in headers} == {source}
    assert {h["source_partition"] for h in headers} == {"0"}
    assert [h["scope"] for h in headers] == ["record", "record", "entry", "record"]
    assert headers[0]["reason"].startswith("not valid JSON")
    assert headers[1]["reason"] == "missing 'label'"
    assert headers[2]["model"] == "model2" and "model 'model2'" in headers[2]["reason"]
    assert "model" not in headers[0]
    assert [m.key() for m in letters] == [f"{source}/0".encode()] * 4

    # The good part of the bad-entry record still counts for model1.
    final = {d["model"]: d["seq"] for d in docs}
    assert final == {"model1": 201, "model2": 200, "model3": 200}


def test_a_dead_letter_kafka_refuses_is_counted_and_the_job_goes_on(
    kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    source = topic()
    dlq = topic(config={"max.message.bytes": "2000"})
    poison = b'{"id": "huge", "label": "' + b"x" * 5000  # not JSON, and too big for the DLQ
    produce(
        kafka_bootstrap, source, [*sample_lines()[:100], poison, NO_LABEL, *sample_lines()[100:200]]
    )
    failed = REGISTRY.get_sample_value("confusion_dead_letters_failed_total") or 0.0

    docs = run_job(kafka_bootstrap, source, dlq, tmp_path)

    assert REGISTRY.get_sample_value("confusion_dead_letters_failed_total") == failed + 1
    assert [m.value() for m in read_topic(kafka_bootstrap, dlq)] == [NO_LABEL]
    assert {d["model"]: d["seq"] for d in docs if d["seq"] == 200}.keys() == {
        "model1",
        "model2",
        "model3",
    }
