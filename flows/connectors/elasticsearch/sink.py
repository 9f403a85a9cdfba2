"""Window documents to Elasticsearch: a history index and a latest-per-model index.

History (``CONFUSION_ES_INDEX``) keeps every emission under ``_id = model/kind/seq``, so a replay
after recovery overwrites instead of duplicating. Latest (``<index>-latest``) keeps one document
per model under ``_id = model``, written with ``seq`` as an external version (``external_gte``):
a replayed older document is refused by Elasticsearch (409) and the newer one stays.

Documents are buffered per sink partition into large bulk requests, sent by a background thread
while the dataflow goes on, and every Bytewax snapshot waits until they are written, before the
checkpoint is committed (see `ElasticsearchSink`).
Every document is delivered or explicitly rejected: transient failures (HTTP 429, 5xx, connection
errors, timeouts) are retried with capped exponential backoff for as long as it takes, which
blocks the dataflow and is the backpressure we want; an item Elasticsearch refuses as invalid is
logged with its reason and counted, never retried.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from elasticsearch import ApiError, Elasticsearch, TransportError
from prometheus_client import Counter
from pydantic import SecretStr

from flows.documents import document_id
from flows.errors import SinkError
from flows.settings import Settings
from flows.telemetry import job_logger

Doc = dict[str, Any]
T = TypeVar("T")

DOCS_WRITTEN = Counter("confusion_es_documents_written", "Documents Elasticsearch accepted",
                       ["index"])
DOCS_REJECTED = Counter("confusion_es_documents_rejected",
                        "Documents Elasticsearch refused as invalid (logged, not retried)",
                        ["index"])
RETRIES = Counter("confusion_es_retries",
                  "Bulk requests (or items of one) retried after a transient failure", ["reason"])
STALE_LATEST = Counter("confusion_es_stale_latest",
                       "Replayed documents not written to the latest index: it has a newer one")

TEMPLATE_PRIORITY = 200
TEMPLATE_VERSION = 1
_DATE = {"type": "date"}
_METRIC = {"type": "double"}
_KEYWORD = {"type": "keyword"}


log = job_logger("elasticsearch")


REFRESH_INTERVAL = "100ms"


def mappings() -> dict[str, Any]:
    """Explicit mappings: what is queried is typed, what is bulky is stored but not indexed.

    ``dynamic: false`` keeps extra fields in ``_source`` without growing the mapping; the matrix
    is kept for display only and ``per_class`` is one ``flattened`` field however many labels.
    """
    return {
        "dynamic": False,
        "properties": {
            "model": _KEYWORD,
            "seq": {"type": "long"},
            "emitted_at": _DATE,
            "labels": _KEYWORD,
            "window": {"properties": {
                "kind": _KEYWORD, "size": {"type": "long"}, "count": {"type": "long"},
                "full": {"type": "boolean"}, "first_id": _KEYWORD, "last_id": _KEYWORD,
                "start": _DATE, "end": _DATE}},
            "matrix": {"type": "object", "enabled": False},
            "metrics": {"properties": {
                **{name: _METRIC for name in ("accuracy", "balanced_accuracy", "macro_f1",
                                              "weighted_f1", "mcc", "kappa")},
                "per_class": {"type": "flattened"}}},
        },
    }


def latest_index(index: str) -> str:
    return f"{index}-latest"


def safe_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class EsClientOptions:
    """How to reach the cluster; secrets are `SecretStr`, so a repr never shows them."""

    url: str
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0

    def __repr__(self) -> str:
        auth = "api key" if self.api_key else f"user {self.username}" if self.username else "none"
        return (f"EsClientOptions(url={safe_url(self.url)!r}, auth={auth}, "
                f"ca_certs={self.ca_certs}, verify_certs={self.verify_certs})")

    def client(self) -> Elasticsearch:
        """A client that never retries on its own: `_Backoff` decides, and logs why."""
        kwargs: dict[str, Any] = {"request_timeout": self.request_timeout, "max_retries": 0,
                                  "retry_on_timeout": False, "verify_certs": self.verify_certs}
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        if self.username is not None and self.password is not None:
            kwargs["basic_auth"] = (self.username, self.password.get_secret_value())
        if self.ca_certs is not None:
            kwargs["ca_certs"] = str(self.ca_certs)
        if not self.verify_certs:
            kwargs["ssl_show_warn"] = False
        return Elasticsearch(self.url, **kwargs)


class _Backoff:
    """Exponential delays with jitter, capped; one instance per thing being retried."""

    def __init__(self, cap: float, first: float = 0.1) -> None:
        self.cap, self.delay, self.attempt = cap, first, 0

    def wait(self) -> float:
        self.attempt += 1
        pause = min(self.cap, self.delay) * random.uniform(0.8, 1.0)
        self.delay = min(self.cap, self.delay * 2)
        time.sleep(pause)
        return pause


def _transient(exc: Exception) -> str | None:
    """Why ``exc`` is worth retrying (429, 5xx, network), or None if retrying cannot help."""
    if isinstance(exc, ApiError):
        status = exc.meta.status
        return f"HTTP {status}" if status == 429 or status >= 500 else None
    if isinstance(exc, TransportError):
        return type(exc).__name__
    return None


def _refused(what: str, exc: ApiError) -> SinkError:
    status = exc.meta.status
    hint = {401: "check CONFUSION_ES_API_KEY or CONFUSION_ES_USERNAME/CONFUSION_ES_PASSWORD",
            403: "the credentials lack a privilege on the indices",
            413: "lower CONFUSION_ES_BULK_BYTES"}.get(status, "this is not a transient error")
    return SinkError(f"Elasticsearch refused {what} (HTTP {status}: {exc.message}); {hint}")


def call_with_retry(what: str, call: Callable[[], T], max_backoff: float) -> T:
    """Run ``call`` until it succeeds, retrying transient failures; others raise `SinkError`."""
    backoff = _Backoff(max_backoff)
    while True:
        try:
            return call()
        except (ApiError, TransportError) as exc:
            reason = _transient(exc)
            if reason is None:
                assert isinstance(exc, ApiError)
                raise _refused(what, exc) from None
            RETRIES.labels(reason=reason).inc()
            log.warning("%s failed (%s: %s); retry %d", what, reason, exc, backoff.attempt + 1)
            backoff.wait()


@dataclass(frozen=True, slots=True)
class _Action:
    """One index operation: the NDJSON meta and source lines, and what it stands for."""

    index: str
    doc_id: str
    lines: bytes
    external_version: bool


def _action(index: str, doc_id: str, source: bytes, version: int | None) -> _Action:
    meta: dict[str, Any] = {"_index": index, "_id": doc_id}
    if version is not None:
        meta["version"] = version
        meta["version_type"] = "external_gte"
    return _Action(index, doc_id, orjson.dumps({"index": meta}) + b"\n" + source + b"\n",
                   version is not None)


def chunks(actions: Sequence[_Action], max_docs: int, max_bytes: int) -> Iterator[list[_Action]]:
    """Bulk bodies of at most ``max_docs`` actions and ``max_bytes``; a bigger action goes alone."""
    chunk: list[_Action] = []
    size = 0
    for action in actions:
        if chunk and (len(chunk) >= max_docs or size + len(action.lines) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += len(action.lines)
    if chunk:
        yield chunk


class BulkWriter:
    """Sends actions in bulk until each is written or refused for good; shared by partitions."""

    def __init__(self, client: Elasticsearch, bulk_docs: int, bulk_bytes: int,
                 max_backoff: float) -> None:
        self.client = client
        self.bulk_docs, self.bulk_bytes, self.max_backoff = bulk_docs, bulk_bytes, max_backoff

    def install(self, index: str) -> None:
        """Put the index templates of history and latest, then create missing indices."""
        for name in (index, latest_index(index)):
            self._install_one(name)

    def _install_one(self, name: str) -> None:
        indices = self.client.indices

        def put_template() -> object:
            return indices.put_index_template(
                name=f"{name}-template", index_patterns=[name], priority=TEMPLATE_PRIORITY,
                version=TEMPLATE_VERSION,
                template={"mappings": mappings(),
                          # searchable within a fraction of a second: documents are few (one per
                          # model per emission), so a short refresh costs little
                          "settings": {"index": {"refresh_interval": REFRESH_INTERVAL}}},
                meta={"managed_by": "confusion-stream"})

        def exists() -> bool:
            return bool(indices.exists(index=name))

        call_with_retry(f"installing index template {name}-template", put_template,
                        self.max_backoff)
        if call_with_retry(f"checking index {name}", exists, self.max_backoff):
            return
        try:
            call_with_retry(f"creating index {name}", lambda: indices.create(index=name),
                            self.max_backoff)
        except SinkError:
            if not exists():  # not the race with another worker creating it first
                raise

    def write(self, actions: Sequence[_Action]) -> None:
        for chunk in chunks(actions, self.bulk_docs, self.bulk_bytes):
            self._deliver(chunk)

    def _deliver(self, chunk: list[_Action]) -> None:
        pending = chunk
        backoff = _Backoff(self.max_backoff)
        while pending:
            body = b"".join(action.lines for action in pending)
            try:
                response = self.client.bulk(operations=cast(Any, body))
            except (ApiError, TransportError) as exc:
                reason = _transient(exc)
                if reason is None:
                    assert isinstance(exc, ApiError)
                    raise _refused(f"a bulk request of {len(pending)} documents", exc) from None
                RETRIES.labels(reason=reason).inc()
                log.warning("bulk of %d documents failed (%s: %s); retry %d", len(pending),
                            reason, exc, backoff.attempt + 1)
                backoff.wait()
                continue
            pending = self._settle(pending, response["items"])
            if pending:
                RETRIES.labels(reason="item 429/5xx").inc()
                log.warning("%d documents of a bulk were refused for now (429/5xx); retry %d",
                            len(pending), backoff.attempt + 1)
                backoff.wait()

    @staticmethod
    def _settle(sent: list[_Action], items: list[dict[str, Any]]) -> list[_Action]:
        """Count what was written, log what was refused; return what must be sent again."""
        again: list[_Action] = []
        for action, item in zip(sent, items, strict=True):
            result = item["index"]
            status = int(result["status"])
            if status < 300:
                DOCS_WRITTEN.labels(index=action.index).inc()
            elif status == 409 and action.external_version:
                STALE_LATEST.inc()
            elif status == 429 or status >= 500:
                again.append(action)
            else:
                DOCS_REJECTED.labels(index=action.index).inc()
                error = result.get("error", {})
                log.error("document %s of index %s rejected (HTTP %d, %s): %s", action.doc_id,
                          action.index, status, error.get("type"), error.get("reason"))
        return again


class BulkSender:
    """Runs a `BulkWriter` on a background thread, so the dataflow computes while Elasticsearch
    indexes.

    At most ``depth`` bulks wait; `submit` blocks beyond that, which keeps the backpressure of a
    slow cluster. One thread sends in submission order, so once ticket ``t`` is done every
    earlier one is too. A failure that retrying cannot fix (`SinkError`) is raised again by the
    next `submit` or `wait`, in the dataflow's thread.
    """

    def __init__(self, writer: BulkWriter, depth: int = 2) -> None:
        self.writer = writer
        self._queue: queue.Queue[tuple[int, list[_Action]]] = queue.Queue(maxsize=depth)
        self._order = threading.Lock()  # tickets are handed out in queue order
        self._done = threading.Condition()
        self._submitted = self._completed = 0
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, actions: list[_Action]) -> int:
        self._raise_failure()
        with self._order:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="es-bulk", daemon=True)
                self._thread.start()
            self._submitted += 1
            ticket = self._submitted
            self._queue.put((ticket, actions))
        return ticket

    def wait(self, ticket: int) -> None:
        with self._done:
            while self._completed < ticket and self._failure is None:
                self._done.wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while True:
            ticket, actions = self._queue.get()
            if self._failure is None:
                try:
                    self.writer.write(actions)
                except BaseException as exc:  # handed to the dataflow thread
                    self._failure = exc
            with self._done:  # after a failure: drained, so no submitter blocks forever
                self._completed = ticket
                self._done.notify_all()


class _ElasticsearchPartition(StatefulSinkPartition[Doc, None]):
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
        self._history: list[_Action] = []
        self._newest: dict[str, tuple[int, bytes]] = {}  # model -> (seq, encoded document)
        self._bytes = 0
        self._since = 0.0
        # Bytewax calls a sink only when items arrive: a flusher thread sends a buffer that has
        # waited ``flush_interval`` even if its models have gone quiet.
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None

    def write_batch(self, values: list[Doc]) -> None:
        with self._lock:
            if not self._history:
                self._since = time.monotonic()
            for doc in values:
                source = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
                action = _action(self._index, document_id(doc), source, None)
                self._history.append(action)
                self._bytes += len(action.lines)
                model, seq = doc["model"], int(doc["seq"])
                if model not in self._newest or seq >= self._newest[model][0]:
                    self._newest[model] = (seq, source)
            pending = len(self._history) + len(self._newest)
            if (pending >= self._writer.bulk_docs or self._bytes >= self._writer.bulk_bytes
                    or time.monotonic() - self._since >= self._flush_interval):
                self._flush()
        if self._flusher is None and self._flush_interval > 0:
            self._flusher = threading.Thread(target=self._flush_when_due, name="es-flush",
                                             daemon=True)
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
        actions = self._history + [_action(self._latest, model, source, seq)
                                   for model, (seq, source) in self._newest.items()]
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


class ElasticsearchSink(FixedPartitionedSink[Doc, None]):
    """``(model, document)`` items to the history and latest indices.

    A `FixedPartitionedSink` for its snapshot hook: documents are buffered across batches into
    bulk requests of up to ``bulk_docs`` (several times cheaper per document than one request
    per batch), sent in the background, and every snapshot waits until they are written, so
    nothing a checkpoint covers is lost in a crash. ``partitions`` fixed partitions, a model's
    documents always to the same one (CRC-32 of the model name), spread the writing over the
    workers; the partitions hold no state, so their number can change between runs.
    """

    def __init__(self, options: EsClientOptions, index: str, *, bulk_docs: int = 500,
                 bulk_bytes: int = 5_000_000, max_backoff: float = 30.0,
                 flush_interval: float = 0.1, partitions: int = 12) -> None:
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
        options = EsClientOptions(settings.es_url, settings.es_api_key, settings.es_username,
                                  settings.es_password, settings.es_ca_certs,
                                  settings.es_verify_certs, settings.es_request_timeout)
        log.info("writing to %s, indices %s and %s, auth %s", safe_url(settings.es_url),
                 settings.es_index, latest_index(settings.es_index),
                 "api key" if options.api_key else options.username or "none")
        return cls(options, settings.es_index, bulk_docs=settings.es_bulk_docs,
                   bulk_bytes=settings.es_bulk_bytes, max_backoff=settings.es_max_backoff,
                   flush_interval=settings.es_flush_interval, partitions=settings.es_partitions)

    def list_parts(self) -> list[str]:
        return [f"es-{i}" for i in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    def sender(self) -> BulkSender:
        """This process's client and sender, made (and the templates installed) on first use."""
        with self._lock:
            if self._sender is None:
                writer = BulkWriter(self.options.client(), self.bulk_docs, self.bulk_bytes,
                                    self.max_backoff)
                writer.install(self.index)
                self._sender = BulkSender(writer)
            return self._sender

    def build_part(self, step_id: str, for_part: str,
                   resume_state: None) -> _ElasticsearchPartition:
        return _ElasticsearchPartition(self.sender(), self.index, self.flush_interval)
