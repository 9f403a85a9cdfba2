"""Talking to the cluster: client options, the retry of transient failures, bulk requests.

Every document is delivered or explicitly rejected: transient failures (HTTP 429, 5xx, connection
errors, timeouts, and items refused with 429/5xx inside a successful bulk response) are retried
with the connectors' one backoff (`flows.connectors.retry`) for as long as it takes, which blocks
the dataflow and is the backpressure we want; an item Elasticsearch refuses as invalid is logged
with its reason and counted, never retried.

Why not the client's own retries: elasticsearch-py (``max_retries``, ``retry_on_status``,
``retry_on_timeout``) retries a bounded number of times and immediately, with no pause between
attempts, which is the wrong answer to a 429 ("slow down"); ``helpers.streaming_bulk``
(``max_retries``/``initial_backoff``/``max_backoff``) backs off but retries only 429, not 5xx
items, gives up after ``max_retries``, and serializes the actions itself (ours are encoded once,
with orjson, and carry external versions). So the client never retries (``max_retries=0``) and
`Retrier` decides, counts (``confusion_es_retries``) and logs each retry.
"""

from __future__ import annotations

import queue
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
from elastic_transport import TlsError
from elasticsearch import ApiError, Elasticsearch, TransportError
from prometheus_client import Counter
from pydantic import SecretStr

from flows.connectors.outage import outage, source_lag
from flows.connectors.retry import Backoff, Transient, retry_forever
from flows.errors import SinkError
from flows.settings import Settings
from flows.telemetry import job_logger

T = TypeVar("T")

DOCS_WRITTEN = Counter(
    "confusion_es_documents_written", "Documents Elasticsearch accepted", ["index"]
)
DOCS_REJECTED = Counter(
    "confusion_es_documents_rejected",
    "Documents Elasticsearch refused as invalid (logged, not retried)",
    ["index"],
)
RETRIES = Counter(
    "confusion_es_retries",
    "Bulk requests (or items of one) retried after a transient failure",
    ["reason"],
)
STALE_LATEST = Counter(
    "confusion_es_stale_latest",
    "Replayed documents not written to the latest index: it has a newer one",
)


log = job_logger("elasticsearch")


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
        return (
            f"EsClientOptions(url={safe_url(self.url)!r}, auth={auth}, "
            f"ca_certs={self.ca_certs}, verify_certs={self.verify_certs})"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> EsClientOptions:
        """The connection and security settings the sink and the source share."""
        assert settings.es_url is not None
        return cls(
            settings.es_url,
            settings.es_api_key,
            settings.es_username,
            settings.es_password,
            settings.es_ca_certs,
            settings.es_verify_certs,
            settings.es_request_timeout,
        )

    def client(self) -> Elasticsearch:
        """A client that never retries on its own: `Retrier` decides, and logs why."""
        kwargs: dict[str, Any] = {
            "request_timeout": self.request_timeout,
            "max_retries": 0,
            "retry_on_timeout": False,
            "verify_certs": self.verify_certs,
        }
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        if self.username is not None and self.password is not None:
            kwargs["basic_auth"] = (self.username, self.password.get_secret_value())
        if self.ca_certs is not None:
            kwargs["ca_certs"] = str(self.ca_certs)
        if not self.verify_certs:
            kwargs["ssl_show_warn"] = False
        return Elasticsearch(self.url, **kwargs)


class _ItemsRefused(Transient):
    """Some items of a bulk were refused for now (429/5xx) inside an HTTP 200 answer."""


def _transient(exc: Exception) -> str | None:
    """Why ``exc`` is worth retrying (429, 5xx, network), or None if retrying cannot help."""
    if isinstance(exc, _ItemsRefused):
        return "item 429/5xx"
    if isinstance(exc, TlsError):  # a certificate does not get valid by waiting
        return None
    if isinstance(exc, ApiError):
        status = exc.meta.status
        return f"HTTP {status}" if status == 429 or status >= 500 else None
    if isinstance(exc, TransportError):
        return type(exc).__name__
    return None


def _refused(what: str, exc: ApiError) -> SinkError:
    status = exc.meta.status
    hint = {
        401: "check CONFUSION_ES_API_KEY or CONFUSION_ES_USERNAME/CONFUSION_ES_PASSWORD",
        403: "the credentials lack a privilege on the indices",
        413: "lower CONFUSION_ES_BULK_BYTES",
    }.get(status, "this is not a transient error")
    return SinkError(f"Elasticsearch refused {what} (HTTP {status}: {exc.message}); {hint}")


def _verify_message(exc: BaseException) -> str | None:
    """OpenSSL's reason (``certificate has expired``...) somewhere in ``exc``'s chain."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ssl.SSLCertVerificationError):
            return str(err.verify_message)
        todo += [e for e in getattr(err, "errors", ()) if isinstance(e, BaseException)]
        todo += [e for e in (err.__cause__, err.__context__) if e is not None]
        todo += [e for e in getattr(err, "args", ()) if isinstance(e, BaseException)]
    return None


def tls_problem(exc: TlsError, ca_certs: Path | None) -> SinkError:
    """The TLS failure as a sentence naming the setting (never a secret)."""
    why = _verify_message(exc) or str(exc)
    trusted = f"CONFUSION_ES_CA_CERTS={ca_certs or '(unset: the system CAs)'}"
    if "expired" in why:
        return SinkError(
            f"the TLS certificate of Elasticsearch has expired ({why}): renew it on the server; "
            f"the job verifies it against {trusted}"
        )
    return SinkError(
        f"the TLS handshake with Elasticsearch failed ({why}): its certificate is not signed "
        f"by a CA in {trusted}, or does not name the host of CONFUSION_ES_URL "
        "(CONFUSION_ES_VERIFY_CERTS=false turns the check off, for tests only)"
    )


class Retrier:
    """A client and the one retry loop every call to it goes through."""

    def __init__(
        self, client: Elasticsearch, max_backoff: float, ca_certs: Path | None = None
    ) -> None:
        self.client = client
        self.max_backoff = max_backoff
        self.ca_certs = ca_certs
        # Shared by every Retrier of the process (sink, source, alerts): one cluster, one story.
        self.outage = outage("Elasticsearch")

    def call(self, what: str, fn: Callable[[], T], *, doing: Callable[[], str] | None = None) -> T:
        """Run ``fn`` until it succeeds, retrying transient failures; others raise `SinkError`.

        ``what`` names the call in the error; ``doing`` (default: ``what``) in the retry log.
        """

        reporter = f"{threading.get_ident()}"
        doing_now = doing or (lambda: what)

        def watched() -> T:
            self.outage.busy(reporter, doing_now())
            try:
                result = fn()
            finally:
                self.outage.idle(reporter)
            self.outage.up(reporter)
            return result

        def on_retry(exc: Exception, reason: str, attempt: int, _pause: float) -> None:
            RETRIES.labels(reason=reason).inc()
            if not isinstance(exc, _ItemsRefused):  # refused items: the cluster answers
                if self.outage.is_down and attempt > 1:
                    # The outage is reported once and then every REPORT_EVERY_S, not per retry.
                    log.debug("%s failed (%s); retry %d", doing_now(), reason, attempt)
                    return
                self.outage.down(reporter, f"{doing_now()} failed ({reason})")
            if isinstance(exc, Transient):
                log.warning("%s; retry %d", exc, attempt)
            else:
                log.warning(
                    "%s failed (%s: %s); retry %d", doing() if doing else what, reason, exc, attempt
                )

        try:
            return retry_forever(watched, _transient, on_retry, Backoff(self.max_backoff))
        except ApiError as exc:
            raise _refused(what, exc) from None
        except TlsError as exc:
            raise tls_problem(exc, self.ca_certs) from None


@dataclass(frozen=True, slots=True)
class Action:
    """One index operation: the NDJSON meta and source lines, and what it stands for."""

    index: str
    doc_id: str
    lines: bytes
    external_version: bool


def index_action(index: str, doc_id: str, source: bytes, version: int | None) -> Action:
    meta: dict[str, Any] = {"_index": index, "_id": doc_id}
    if version is not None:
        meta["version"] = version
        meta["version_type"] = "external_gte"
    return Action(
        index, doc_id, orjson.dumps({"index": meta}) + b"\n" + source + b"\n", version is not None
    )


def chunks(actions: Sequence[Action], max_docs: int, max_bytes: int) -> Iterator[list[Action]]:
    """Bulk bodies of at most ``max_docs`` actions and ``max_bytes``; a bigger action goes alone."""
    chunk: list[Action] = []
    size = 0
    for item in actions:
        if chunk and (len(chunk) >= max_docs or size + len(item.lines) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item.lines)
    if chunk:
        yield chunk


class BulkWriter:
    """Sends actions in bulk until each is written or refused for good; shared by partitions."""

    def __init__(self, retrier: Retrier, bulk_docs: int, bulk_bytes: int) -> None:
        self.retrier = retrier
        self.bulk_docs, self.bulk_bytes = bulk_docs, bulk_bytes

    def write(self, actions: Sequence[Action]) -> None:
        for chunk in chunks(actions, self.bulk_docs, self.bulk_bytes):
            self._deliver(chunk)

    def _deliver(self, chunk: list[Action]) -> None:
        pending = chunk

        def attempt() -> None:
            nonlocal pending
            body = b"".join(item.lines for item in pending)
            response = self.retrier.client.bulk(operations=cast(Any, body))
            pending = self._settle(pending, response["items"])
            if pending:
                raise _ItemsRefused(
                    f"{len(pending)} documents of a bulk were refused for now (429/5xx)"
                )

        self.retrier.call(
            f"a bulk request of {len(pending)} documents",
            attempt,
            doing=lambda: f"bulk of {len(pending)} documents",
        )

    @staticmethod
    def _settle(sent: list[Action], items: list[dict[str, Any]]) -> list[Action]:
        """Count what was written, log what was refused; return what must be sent again."""
        again: list[Action] = []
        for item_action, item in zip(sent, items, strict=True):
            result = item["index"]
            status = int(result["status"])
            if status < 300:
                DOCS_WRITTEN.labels(index=item_action.index).inc()
            elif status == 409 and item_action.external_version:
                STALE_LATEST.inc()
            elif status == 429 or status >= 500:
                again.append(item_action)
            else:
                DOCS_REJECTED.labels(index=item_action.index).inc()
                error = result.get("error", {})
                log.error(
                    "document %s of index %s rejected (HTTP %d, %s): %s",
                    item_action.doc_id,
                    item_action.index,
                    status,
                    error.get("type"),
                    error.get("reason"),
                )
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
        self._queue: queue.Queue[tuple[int, list[Action]]] = queue.Queue(maxsize=depth)
        self._order = threading.Lock()  # tickets are handed out in queue order
        self._done = threading.Condition()
        self._submitted = self._completed = 0
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.waiting_docs = 0  # queued or being sent: what an outage holds back
        self.waiting_bulks = 0
        self.writer.retrier.outage.behind = self.behind

    def behind(self) -> str:
        """How far behind the job is while Elasticsearch is away (the outage's report)."""
        lag = source_lag()
        return (
            f"{self.waiting_docs:,} documents in {self.waiting_bulks} bulks waiting "
            f"(the dataflow is paused until they are written)"
            + (f"; source lag when last measured {lag:,} records" if lag is not None else "")
        )

    def submit(self, actions: list[Action]) -> int:
        self._raise_failure()
        with self._order:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="es-bulk", daemon=True)
                self._thread.start()
            self._submitted += 1
            ticket = self._submitted
            with self._done:
                self.waiting_docs += len(actions)
                self.waiting_bulks += 1
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
                self.waiting_docs -= len(actions)
                self.waiting_bulks -= 1
                self._done.notify_all()
