"""The Elasticsearch sink against the real node: mappings, ids, versions, bulk sizing, retries.

Faults are real too: `FaultProxy` sits in front of the node and answers some bulk requests with
429/503/401 or refuses connections for a while; every other request reaches Elasticsearch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main
from elasticsearch import Elasticsearch
from prometheus_client import REGISTRY

from flows.connectors.elasticsearch.bulk import EsClientOptions
from flows.connectors.elasticsearch.mapping import latest_index
from flows.connectors.elasticsearch.sink import ElasticsearchSink
from flows.errors import SinkError
from flows.settings import Settings
from tests.integration.pipeline import (
    FaultProxy,
    IndexNameFactory,
    all_docs,
    count,
    doc_id,
    recompute,
    sample_lines,
    without_emitted_at,
    write_lines,
)

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def sample_docs(tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """18 real documents (3 models x 6) from the first 600 sample records, with emitted_at."""
    tmp = tmp_path_factory.mktemp("docs")
    head = tmp / "head.jsonl"
    write_lines(head, sample_lines()[:600])
    docs = recompute(head, tmp, window_size=200, emit_every=100)
    return [{**doc, "emitted_at": "2026-11-22T10:30:00.000Z"} for doc in docs.values()]


def sink_for(url: str, index: str, **kwargs: Any) -> ElasticsearchSink:
    return ElasticsearchSink(EsClientOptions(url), index, **kwargs)


def write(sink: ElasticsearchSink, docs: list[Doc]) -> None:
    """Write like Bytewax does: a batch, then the snapshot that precedes a checkpoint."""
    part = sink.build_part("documents", "es-0", None)
    part.write_batch(docs)
    part.snapshot()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_templates_mappings_and_document_shape(
    es_url: str, es_client: Elasticsearch, es_index: IndexNameFactory, sample_docs: list[Doc]
) -> None:
    index = es_index()
    write(sink_for(es_url, index), sample_docs)

    for name in (index, latest_index(index)):
        template = es_client.indices.get_index_template(name=f"{name}-template")
        assert template["index_templates"][0]["index_template"]["index_patterns"] == [name]
        mapping = es_client.indices.get_mapping(index=name)[name]["mappings"]
        props = mapping["properties"]
        assert mapping["dynamic"] == "false"
        assert props["model"] == {"type": "keyword"}
        assert props["seq"] == {"type": "long"}
        assert props["window"]["properties"]["start"]["type"] == "date"
        assert props["window"]["properties"]["end"]["type"] == "date"
        assert props["metrics"]["properties"]["accuracy"] == {"type": "double"}
        assert props["metrics"]["properties"]["per_class"] == {"type": "flattened"}
        assert props["matrix"] == {"type": "object", "enabled": False}

    stored = all_docs(es_client, index)
    assert stored == {doc_id(doc): doc for doc in sample_docs}  # exactly the contract shape
    es_client.indices.refresh(index=latest_index(index))
    latest = es_client.search(index=latest_index(index), size=10, version=True)["hits"]["hits"]
    newest = {d["model"]: d for d in sample_docs if d["seq"] == 600}
    assert {hit["_id"]: hit["_source"] for hit in latest} == newest
    assert {hit["_version"] for hit in latest} == {600}  # seq is the external version

    # Metrics are queryable as numbers; the matrix is not indexed but kept in _source.
    found = es_client.search(
        index=index, query={"range": {"metrics.accuracy": {"gte": 0.0}}}, size=0
    )
    assert found["hits"]["total"]["value"] == len(sample_docs)


def test_replay_overwrites_history_and_never_regresses_latest(
    es_url: str, es_client: Elasticsearch, es_index: IndexNameFactory, sample_docs: list[Doc]
) -> None:
    index = es_index()
    sink = sink_for(es_url, index)
    write(sink, sample_docs)
    stale_before = metric("confusion_es_stale_latest_total")

    # A replay after recovery: older documents again, with a new emitted_at.
    replayed = [
        {**d, "emitted_at": "2026-11-22T11:00:00.000Z"} for d in sample_docs if d["seq"] <= 300
    ]
    write(sink, replayed)

    stored = all_docs(es_client, index)
    assert len(stored) == len(sample_docs)  # overwritten, not duplicated
    assert stored[doc_id(replayed[0])]["emitted_at"] == "2026-11-22T11:00:00.000Z"
    latest = all_docs(es_client, latest_index(index))
    assert {d["seq"] for d in latest.values()} == {600}
    assert metric("confusion_es_stale_latest_total") == stale_before + 3

    # The same seq again is a legitimate rewrite (external_gte): latest takes it.
    again = [
        {**d, "emitted_at": "2026-11-22T12:00:00.000Z"} for d in sample_docs if d["seq"] == 600
    ]
    write(sink, again)
    latest = all_docs(es_client, latest_index(index))
    assert {d["emitted_at"] for d in latest.values()} == {"2026-11-22T12:00:00.000Z"}


def test_invalid_document_is_logged_counted_and_not_retried(
    es_url: str,
    es_client: Elasticsearch,
    es_index: IndexNameFactory,
    sample_docs: list[Doc],
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = es_index()
    bad = {
        **sample_docs[0],
        "seq": 12345,
        "window": {**sample_docs[0]["window"], "start": "yesterday-ish"},
    }
    before = metric("confusion_es_documents_rejected_total", index=index)
    with FaultProxy(es_url) as proxy, caplog.at_level(logging.ERROR, "confusion"):
        write(sink_for(proxy.url, index), [*sample_docs, bad])
    assert metric("confusion_es_documents_rejected_total", index=index) == before + 1
    assert proxy.bulk_requests == 1  # refused for good at the first answer
    assert f"document {doc_id(bad)} of index {index} rejected" in caplog.text
    assert "document_parsing_exception" in caplog.text
    assert count(es_client, index) == len(sample_docs)


def test_bulk_requests_respect_count_and_byte_limits(
    es_url: str, es_client: Elasticsearch, es_index: IndexNameFactory, sample_docs: list[Doc]
) -> None:
    index = es_index()
    with FaultProxy(es_url) as proxy:
        write(sink_for(proxy.url, index, bulk_docs=5), sample_docs)
        by_count = list(proxy.bulk_bodies)
        write(sink_for(proxy.url, index, bulk_bytes=10_000), sample_docs)
        by_bytes = proxy.bulk_bodies[len(by_count) :]
    actions = len(sample_docs) + 3  # history + one latest per model
    assert [body.count(b"\n") // 2 for body in by_count] == [5, 5, 5, 5, 1]
    assert sum(body.count(b"\n") // 2 for body in by_bytes) == actions
    assert len(by_bytes) > 1 and all(len(body) <= 10_000 for body in by_bytes)
    assert count(es_client, index) == len(sample_docs)


@pytest.mark.parametrize("status", [429, 503])
def test_rejected_bulks_are_retried_until_written(
    es_url: str,
    es_client: Elasticsearch,
    es_index: IndexNameFactory,
    sample_docs: list[Doc],
    status: int,
) -> None:
    index = es_index()
    retries = metric("confusion_es_retries_total", reason=f"HTTP {status}")
    with FaultProxy(es_url) as proxy:
        sink = sink_for(proxy.url, index, max_backoff=0.2)
        part = sink.build_part("documents", "es-0", None)  # templates go through first
        proxy.fail_bulk(3, status)
        part.write_batch(sample_docs)
        part.snapshot()
    assert proxy.failed_bulks == 3
    assert metric("confusion_es_retries_total", reason=f"HTTP {status}") == retries + 3
    assert {k: without_emitted_at(d) for k, d in all_docs(es_client, index).items()} == {
        doc_id(d): without_emitted_at(d) for d in sample_docs
    }


def test_refused_credentials_stop_the_sink(
    es_url: str, es_index: IndexNameFactory, sample_docs: list[Doc]
) -> None:
    with FaultProxy(es_url) as proxy:
        part = sink_for(proxy.url, es_index()).build_part("documents", "es-0", None)
        proxy.fail_bulk(1, 401)
        part.write_batch(sample_docs)
        with pytest.raises(SinkError, match="CONFUSION_ES_API_KEY"):
            part.snapshot()


def test_buffer_is_flushed_by_the_snapshot(
    es_url: str, es_client: Elasticsearch, es_index: IndexNameFactory, sample_docs: list[Doc]
) -> None:
    index = es_index()
    part = sink_for(es_url, index, flush_interval=3600).build_part("documents", "es-0", None)
    part.write_batch(sample_docs[:9])
    part.write_batch(sample_docs[9:])
    assert count(es_client, index) == 0  # buffered: one bulk later instead of two now
    part.snapshot()
    assert count(es_client, index) == len(sample_docs)


def test_flow_survives_elasticsearch_being_unreachable(
    es_url: str, es_client: Elasticsearch, es_index: IndexNameFactory, tmp_path: Path
) -> None:
    """The whole flow (file source) while the node is unreachable at start and then 429s."""
    from flows.confusion import build_flow

    index = es_index()
    head = tmp_path / "head.jsonl"
    write_lines(head, sample_lines()[:1500])
    expected = recompute(head, tmp_path, window_size=300, emit_every=100)
    with FaultProxy(es_url) as proxy:
        proxy.down_for(2.0)
        proxy.fail_bulk(2, 429)
        settings = Settings(
            source="file",
            input=head,
            sink="elasticsearch",
            es_url=proxy.url,
            es_index=index,
            window_size=300,
            emit_every=100,
            batch_size=100,
            es_max_backoff=0.5,
            es_flush_interval=0,
            progress="off",
            summary=False,
            dead_letter_path=tmp_path / "dead.jsonl",
        )
        run_main(build_flow(settings))
        assert proxy.failed_bulks == 2
    assert {k: without_emitted_at(d) for k, d in all_docs(es_client, index).items()} == expected
