"""Window documents to Elasticsearch: a history index and a latest-per-model index.

History (``CONFUSION_ES_INDEX``) keeps every emission under ``_id = model/kind/seq``, so a replay
after recovery overwrites instead of duplicating. Latest (``<index>-latest``) keeps one document
per model under ``_id = model``, written with ``seq`` as an external version (``external_gte``):
a replayed older document is refused by Elasticsearch (409) and the newer one stays.

Documents are buffered per sink partition into large bulk requests, sent by a background thread
while the dataflow goes on, and every Bytewax snapshot waits until they are written, before the
checkpoint is committed (see `ElasticsearchSink`). Retries and rejections: see ``bulk``.
"""

from __future__ import annotations

import threading
import time
import zlib

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.connectors.elasticsearch.bulk import (
    Action,
    BulkSender,
    BulkWriter,
    EsClientOptions,
    Retrier,
    index_action,
    safe_url,
)
from flows.connectors.elasticsearch.mapping import install, latest_index
from flows.output.documents import Document, document_id
from flows.settings import Settings
from flows.telemetry import job_logger

log = job_logger("elasticsearch")


class _ElasticsearchPartition(StatefulSinkPartition[Document, None]):
    """Buffers documents into big bulk requests for the sender; every snapshot waits for them.

    Bytewax snapshots a sink partition before it commits a checkpoint, so blocking there until
    Elasticsearch has every buffered document is what makes "committed" imply "written".
    """

    def __init__(self, sender: BulkSender, index: str, flush_interval: float) -> None:
        self._sender = sender
        self._writer = sender.writer
        self._ticket = 0
        self._index = index
        self._latest = latest_index(index)
        self._flush_interval = flush_interval
        self._history: list[Action] = []
        self._newest: dict[str, tuple[int, bytes]] = {}  # model -> (seq, encoded document)
        self._bytes = 0
        self._since = 0.0
        # Bytewax calls a sink only when items arrive: a flusher thread sends a buffer that has
        # waited ``flush_interval`` even if its models have gone quiet.
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None

    def write_batch(self, values: list[Document]) -> None:
        with self._lock:
            if not self._history:
                self._since = time.monotonic()
            for doc in values:
                source = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
                action = index_action(self._index, document_id(doc), source, None)
                self._history.append(action)
                self._bytes += len(action.lines)
                model, seq = doc["model"], int(doc["seq"])
                if model not in self._newest or seq >= self._newest[model][0]:
                    self._newest[model] = (seq, source)
            pending = len(self._history) + len(self._newest)
            if (
                pending >= self._writer.bulk_docs
                or self._bytes >= self._writer.bulk_bytes
                or time.monotonic() - self._since >= self._flush_interval
            ):
                self._flush()
        if self._flusher is None and self._flush_interval > 0:
            self._flusher = threading.Thread(
                target=self._flush_when_due, name="es-flush", daemon=True
            )
            self._flusher.start()

    def _flush_when_due(self) -> None:
        while not self._closed.wait(self._flush_interval / 2):
            with self._lock:
                if self._history and time.monotonic() - self._since >= self._flush_interval:
                    try:
                        self._flush()
                    except BaseException:  # the sender raises it again in the dataflow thread
                        return

    def _flush(self) -> None:
        """Hand the history documents, then each model's newest for latest, to the sender."""
        if not self._history:
            return
        actions = self._history + [
            index_action(self._latest, model, source, seq)
            for model, (seq, source) in self._newest.items()
        ]
        self._ticket = self._sender.submit(actions)
        self._history, self._newest, self._bytes = [], {}, 0

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def snapshot(self) -> None:
        """Block until everything written to this partition is in Elasticsearch."""
        with self._lock:
            self._flush()
            ticket = self._ticket
        self._sender.wait(ticket)

    def close(self) -> None:
        self.snapshot()
        self._closed.set()


class ElasticsearchSink(FixedPartitionedSink[Document, None]):
    """``(model, document)`` items to the history and latest indices.

    A `FixedPartitionedSink` for its snapshot hook: documents are buffered across batches into
    bulk requests of up to ``bulk_docs`` (several times cheaper per document than one request
    per batch), sent in the background, and every snapshot waits until they are written, so
    nothing a checkpoint covers is lost in a crash. ``partitions`` fixed partitions, a model's
    documents always to the same one (CRC-32 of the model name), spread the writing over the
    workers; the partitions hold no state, so their number can change between runs.
    """

    def __init__(
        self,
        options: EsClientOptions,
        index: str,
        *,
        bulk_docs: int = 500,
        bulk_bytes: int = 5_000_000,
        max_backoff: float = 30.0,
        flush_interval: float = 0.1,
        partitions: int = 12,
    ) -> None:
        self.options = options
        self.index = index
        self.bulk_docs, self.bulk_bytes, self.max_backoff = bulk_docs, bulk_bytes, max_backoff
        self.flush_interval = flush_interval
        self.partitions = partitions
        self._sender: BulkSender | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ElasticsearchSink({self.options!r}, index={self.index!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticsearchSink:
        assert settings.es_url is not None
        options = EsClientOptions.from_settings(settings)
        log.info(
            "writing to %s, indices %s and %s, auth %s",
            safe_url(settings.es_url),
            settings.es_index,
            latest_index(settings.es_index),
            "api key" if options.api_key else options.username or "none",
        )
        return cls(
            options,
            settings.es_index,
            bulk_docs=settings.es_bulk_docs,
            bulk_bytes=settings.es_bulk_bytes,
            max_backoff=settings.es_max_backoff,
            flush_interval=settings.es_flush_interval,
            partitions=settings.es_partitions,
        )

    def list_parts(self) -> list[str]:
        return [f"es-{i}" for i in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def sender(self) -> BulkSender:
        """This process's client and sender, made (and the templates installed) on first use."""
        with self._lock:
            if self._sender is None:
                retrier = Retrier(self.options.client(), self.max_backoff, self.options.ca_certs)
                install(retrier, self.index)
                self._sender = BulkSender(BulkWriter(retrier, self.bulk_docs, self.bulk_bytes))
            return self._sender

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> _ElasticsearchPartition:
        return _ElasticsearchPartition(self.sender(), self.index, self.flush_interval)
