"""Dead letters to an Elasticsearch index (``CONFUSION_DLQ_INDEX``), for the Elasticsearch source.

Each letter is one document: why it was refused, the original bytes, and where it came from
(``source.index``, ``source.shard``, ``source.seq_no``). Its ``_id`` is derived from that place
(and the model, for an entry), so the replay after a crash overwrites instead of duplicating.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from elasticsearch import BadRequestError

from flows.connectors.elasticsearch.bulk import (
    BulkWriter,
    EsClientOptions,
    Retrier,
    index_action,
)
from flows.parsing.batches import DeadLetter
from flows.settings import Settings

MAX_ID_BYTES = 512  # Elasticsearch refuses longer ids

MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "reason": {
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}},
        },
        "scope": {"type": "keyword"},
        "model": {"type": "keyword"},
        "source": {
            "properties": {
                "origin": {"type": "keyword"},
                "index": {"type": "keyword"},
                "shard": {"type": "integer"},
                "seq_no": {"type": "long"},
                "position": {"type": "long"},
            }
        },
        "raw": {"type": "text", "index": False},
        "raw_hex": {"type": "keyword", "index": False, "doc_values": False},
    },
}


def dead_letter_id(letter: DeadLetter) -> str:
    """``index/shard/seq_no`` and ``/model`` for an entry; hashed when too long for an id."""
    where = f"{letter.origin}/{letter.position}"
    doc_id = where if letter.model is None else f"{where}/{letter.model}"
    encoded = doc_id.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_ID_BYTES:
        return f"{where}/sha256-{hashlib.sha256(encoded).hexdigest()}"
    return doc_id


def dead_letter_document(letter: DeadLetter) -> bytes:
    doc = letter.to_json()
    doc["source"]["seq_no"] = letter.position
    try:
        return orjson.dumps(doc)
    except TypeError:  # a lone surrogate in a model name: escape it, as the JSON-lines file does
        import json

        return json.dumps(doc, ensure_ascii=True).encode()


class _DeadLetterIndexPartition(StatelessSinkPartition[tuple[str, DeadLetter]]):
    def __init__(self, writer: BulkWriter, index: str) -> None:
        self._writer = writer
        self._index = index

    def write_batch(self, items: list[tuple[str, DeadLetter]]) -> None:
        """Written before the next batch is taken: a crash loses nothing the checkpoint covers."""
        self._writer.write(
            [
                index_action(
                    self._index, dead_letter_id(letter), dead_letter_document(letter), None
                )
                for _key, letter in items
            ]
        )


class DeadLetterIndexSink(DynamicSink[tuple[str, DeadLetter]]):
    """Refused records and entries to one index, at least once, duplicates overwritten."""

    def __init__(
        self,
        options: EsClientOptions,
        index: str,
        *,
        bulk_docs: int = 500,
        bulk_bytes: int = 5_000_000,
        max_backoff: float = 30.0,
    ) -> None:
        self.options = options
        self.index = index
        self.bulk_docs, self.bulk_bytes, self.max_backoff = bulk_docs, bulk_bytes, max_backoff

    def __repr__(self) -> str:
        return f"DeadLetterIndexSink({self.options!r}, index={self.index!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetterIndexSink:
        assert settings.dlq_index is not None
        return cls(
            EsClientOptions.from_settings(settings),
            settings.dlq_index,
            bulk_docs=settings.es_bulk_docs,
            bulk_bytes=settings.es_bulk_bytes,
            max_backoff=settings.es_max_backoff,
        )

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _DeadLetterIndexPartition:
        retrier = Retrier(self.options.client(), self.max_backoff, self.options.ca_certs)
        client = retrier.client

        def create() -> None:
            try:
                client.indices.create(index=self.index, mappings=MAPPINGS)
            except BadRequestError as exc:  # another worker (or an earlier run) made it
                if exc.error != "resource_already_exists_exception":
                    raise

        retrier.call(f"creating the dead-letter index {self.index}", create)
        return _DeadLetterIndexPartition(
            BulkWriter(retrier, self.bulk_docs, self.bulk_bytes), self.index
        )
