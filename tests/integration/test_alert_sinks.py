"""Alert documents in real Elasticsearch (``<index>-alerts``) and a real Kafka topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from tests.integration.pipeline import (
    IndexNameFactory,
    Job,
    TopicFactory,
    job_env,
    read_topic,
)

TIMEOUT_S = 240.0


def run_demo(tmp: Path, name: str, **settings: object) -> None:
    env = job_env(DEAD_LETTER_PATH=tmp / f"{name}-dead.jsonl", SUMMARY="false", **settings)
    job = Job(env, tmp / f"{name}.log")
    job.start()
    assert job.wait(TIMEOUT_S) == [0], job.output()[-3000:]


def es_alerts(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def test_alerts_index_has_typed_idempotent_alerts(
    tmp_path: Path, es_url: str, es_client: Elasticsearch, es_index: IndexNameFactory
) -> None:
    index = es_index()
    for run in ("first", "replay"):  # the same stream again: same ids, overwritten
        run_demo(tmp_path, run, SINK="elasticsearch", ES_URL=es_url, ES_INDEX=index)
        alerts = es_alerts(es_client, f"{index}-alerts")
        assert alerts and all(doc["id"] == _id for _id, doc in alerts.items())
        assert {doc["model"] for doc in alerts.values()} == {"model2"}
        if run == "first":
            first = {k: {**v, "emitted_at": None} for k, v in alerts.items()}
    assert {k: {**v, "emitted_at": None} for k, v in alerts.items()} == first
    mapping = es_client.indices.get_mapping(index=f"{index}-alerts")
    props = next(iter(mapping.body.values()))["mappings"]["properties"]
    assert props["value"]["type"] == "double" and props["fired_at"]["type"] == "date"
    assert props["alert_id"]["type"] == "keyword" and props["detector"]["type"] == "flattened"
    count = es_client.count(index=f"{index}-alerts", query={"range": {"fired_seq": {"gt": 45_000}}})
    assert count["count"] == len(alerts)


def test_alerts_topic_gets_every_alert_keyed_by_id(
    tmp_path: Path, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    name = topic()
    run_demo(
        tmp_path,
        "kafka",
        ALERTS_OUTPUT=tmp_path / "alerts.jsonl",
        OUTPUT=tmp_path / "documents.jsonl",
        ALERTS_TOPIC=name,
        KAFKA_BOOTSTRAP=kafka_bootstrap,
    )
    in_file = [orjson.loads(line) for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    messages = read_topic(kafka_bootstrap, name)
    assert in_file and [orjson.loads(m.value() or b"") for m in messages] == in_file
    assert [m.key() for m in messages] == [a["id"].encode() for a in in_file]
