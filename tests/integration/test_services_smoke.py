"""The local servers from scripts/services are the real thing, as the project's clients see
them: confluent-kafka against Kafka, the official elasticsearch 9 client against ES."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch, helpers

# The factories' precise signatures are the Protocols in conftest.py (which is not
# importable as a module): topic(partitions=1, *, config=None), es_index(suffix="").
TopicFactory = Callable[..., str]
IndexNameFactory = Callable[..., str]

PARTITIONS = 3
MESSAGES = 30


def test_kafka_roundtrip_keeps_partitions_order_and_headers(
    kafka_bootstrap: str, kafka_admin: AdminClient, topic: TopicFactory
) -> None:
    name = topic(partitions=PARTITIONS)
    assert (
        len(kafka_admin.list_topics(topic=name, timeout=10).topics[name].partitions) == PARTITIONS
    )

    delivered: list[Message] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        delivered.append(msg)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(MESSAGES):
        producer.produce(
            name,
            key=f"model-{i % 5}".encode(),
            value=json.dumps({"seq": i}).encode(),
            partition=i % PARTITIONS,
            headers=[("schema", b"prediction/v1"), ("seq", str(i).encode())],
            on_delivery=on_delivery,
        )
    assert producer.flush(30) == 0
    assert len(delivered) == MESSAGES
    assert {m.partition() for m in delivered} == set(range(PARTITIONS))

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"it-smoke-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[Message] = []
    try:
        consumer.subscribe([name])
        deadline = time.monotonic() + 60
        while len(received) < MESSAGES and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            received.append(msg)
        # Committing through the group coordinator works too (offsets topic is usable).
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(name, p) for p in range(PARTITIONS)], 10)
    finally:
        consumer.close()

    assert len(received) == MESSAGES
    assert {tp.offset for tp in committed} == {MESSAGES // PARTITIONS}
    for msg in received:
        value = msg.value()
        assert value is not None
        seq = json.loads(value)["seq"]
        assert msg.partition() == seq % PARTITIONS
        assert msg.key() == f"model-{seq % 5}".encode()
        assert msg.headers() == [("schema", b"prediction/v1"), ("seq", str(seq).encode())]
    for partition in range(PARTITIONS):
        seqs = [json.loads(m.value() or b"")["seq"] for m in received if m.partition() == partition]
        assert seqs == sorted(seqs), f"partition {partition} out of order: {seqs}"


def test_elasticsearch_info_is_a_real_9x_node(es_client: Elasticsearch) -> None:
    info = es_client.info()
    assert info["version"]["number"].startswith("9.")
    assert info["tagline"] == "You Know, for Search"
    # The client itself already refused the server unless it sent X-Elastic-Product.
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"
    assert es_client.ping()


def test_elasticsearch_template_index_bulk_search(
    es_client: Elasticsearch, es_index: IndexNameFactory
) -> None:
    prefix = es_index()
    index = f"{prefix}-2025.01"
    es_client.indices.put_index_template(
        name=f"{prefix}-template",
        index_patterns=[f"{prefix}-*"],
        priority=500,
        template={
            "settings": {"number_of_shards": 1},
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "model": {"type": "keyword"},
                    "window_end": {"type": "date"},
                    "accuracy": {"type": "double"},
                    "support": {"type": "long"},
                    "note": {"type": "text"},
                },
            },
        },
    )

    es_client.index(
        index=index,
        id="single",
        document={
            "model": "m-single",
            "window_end": "2025-01-01T00:00:00Z",
            "accuracy": 0.5,
            "support": 2,
            "note": "indexed alone",
        },
    )
    actions = [
        {
            "_index": index,
            "_id": f"doc-{i}",
            "_source": {
                "model": f"m-{i % 4}",
                "window_end": f"2025-01-01T00:{i:02d}:00Z",
                "accuracy": i / 40,
                "support": i,
                "note": "from bulk",
            },
        }
        for i in range(40)
    ]
    ok, errors = helpers.bulk(es_client, actions)
    assert (ok, errors) == (40, [])

    # The strict mapping from the template is in force: an unknown field is rejected.
    bulk = es_client.bulk(operations=[{"index": {"_index": index, "_id": "bad"}}, {"nope": 1}])
    assert bulk["errors"] is True
    assert bulk["items"][0]["index"]["error"]["type"] == "strict_dynamic_mapping_exception"

    es_client.indices.refresh(index=index)
    assert es_client.count(index=index)["count"] == 41
    mapping = es_client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["properties"]["model"] == {"type": "keyword"}

    result = es_client.search(
        index=index,
        query={
            "bool": {"filter": [{"term": {"model": "m-1"}}, {"range": {"support": {"gte": 20}}}]}
        },
        sort=[{"support": "asc"}],
        aggs={
            "per_model": {
                "terms": {"field": "model"},
                "aggs": {"acc": {"avg": {"field": "accuracy"}}},
            }
        },
        size=20,
    )
    assert [hit["_source"]["support"] for hit in result["hits"]["hits"]] == [21, 25, 29, 33, 37]
    buckets = {b["key"]: b for b in result["aggregations"]["per_model"]["buckets"]}
    assert set(buckets) == {"m-1"}
    assert buckets["m-1"]["acc"]["value"] == sum([21, 25, 29, 33, 37]) / 5 / 40

    text_hits = es_client.search(index=index, query={"match": {"note": "alone"}})["hits"]
    assert [h["_id"] for h in text_hits["hits"]] == ["single"]
