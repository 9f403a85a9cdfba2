"""Helpers shared by the Kafka / Elasticsearch / recovery integration tests.

Everything here talks to the real servers of ``scripts/services``; the only thing standing in
between is `FaultProxy`, a loopback TCP proxy in front of the real Elasticsearch node that can
refuse connections or answer the next N bulk requests with an HTTP error.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from elasticsearch import Elasticsearch

from flows import demo

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
Doc = dict[str, Any]
# The conftest fixtures' factories (conftest.py is not importable): topic(partitions=1, *,
# config=None) -> name, es_index(suffix="") -> name.
TopicFactory = Callable[..., str]
IndexNameFactory = Callable[..., str]


# ----------------------------------------------------------------------------- data


def sample_lines() -> list[bytes]:
    """The project's 6,000-record sample stream (`flows.demo.sample_lines`), one value a line."""
    return demo.sample_lines()


def write_lines(path: Path, lines: Sequence[bytes]) -> Path:
    """``lines`` as a JSON-lines file at ``path``."""
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes | None],
    *,
    partition_of: Callable[[int], int] | None = lambda i: 0,
    rate: float = 0.0,
    timestamps: Sequence[int] | None = None,
) -> None:
    """Write ``values`` in order (to partition ``partition_of(i)``), paced at ``rate``/s."""
    failures: list[str] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.str())

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    start = time.monotonic()
    for i, value in enumerate(values):
        extra: dict[str, Any] = {}
        if partition_of is not None:
            extra["partition"] = partition_of(i)
        if timestamps is not None:
            extra["timestamp"] = timestamps[i]
        producer.produce(topic, value, on_delivery=report, **extra)
        producer.poll(0)
        if rate > 0:
            ahead = start + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(30) == 0, "messages still in flight after 30s"
    assert not failures, failures[:3]


def read_topic(
    bootstrap: str, topic: str, partition: int = 0, timeout: float = 30.0
) -> list[Message]:
    """Every message of one partition of ``topic``, up to its current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                return messages
            messages.append(msg)
    finally:
        consumer.close()
    raise AssertionError(f"no end of {topic}/{partition} within {timeout}s")


class BackgroundProducer(threading.Thread):
    """`produce` in a thread, so a test can kill and restart the job while records flow."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self._args, self._kwargs = args, kwargs
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            produce(*self._args, **self._kwargs)
        except BaseException as exc:  # re-raised by finish()
            self.error = exc

    def finish(self, timeout: float = 120.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "producer did not finish"
        if self.error is not None:
            raise self.error


# ----------------------------------------------------------------------------- reference


def without_emitted_at(doc: Doc) -> Doc:
    return {key: value for key, value in doc.items() if key != "emitted_at"}


def doc_id(doc: Doc) -> str:
    return f"{doc['model']}/{doc['window']['kind']}/{doc['seq']}"


def recompute(path: Path, tmp: Path, *, window_size: int, emit_every: int) -> dict[str, Doc]:
    """The documents of an uninterrupted in-process run over the file (the file source)."""
    from bytewax.testing import run_main

    from flows.confusion import build_flow
    from flows.settings import Settings

    out = tmp / "reference.jsonl"
    settings = Settings(
        source="file",
        input=path,
        sink="jsonl",
        output=out,
        dead_letter_path=tmp / "reference-dead.jsonl",
        window_size=window_size,
        emit_every=emit_every,
        progress="off",
        summary=False,
    )
    run_main(build_flow(settings))
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    return {doc_id(d): without_emitted_at(d) for d in docs}


def periodic(docs: Mapping[str, Doc], emit_every: int) -> dict[str, Doc]:
    """Only the documents emitted at multiples of ``emit_every`` (an unbounded run has no final
    end-of-input documents)."""
    return {k: d for k, d in docs.items() if d["seq"] % emit_every == 0}


# ----------------------------------------------------------------------------- Elasticsearch


def count(es: Elasticsearch, index: str) -> int:
    if not es.indices.exists(index=index):
        return 0
    es.indices.refresh(index=index)
    return int(es.count(index=index)["count"])


def all_docs(es: Elasticsearch, index: str) -> dict[str, Doc]:
    """Every document of ``index`` by ``_id`` (tests stay well below 10,000 documents)."""
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=10_000, sort=["_doc"])["hits"]["hits"]
    assert len(hits) < 10_000
    return {hit["_id"]: hit["_source"] for hit in hits}


def history(es: Elasticsearch, index: str) -> dict[str, Doc]:
    return {key: without_emitted_at(doc) for key, doc in all_docs(es, index).items()}


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> float:
    """Poll ``check`` until true; return the seconds it took, fail with ``what`` on timeout."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


# ----------------------------------------------------------------------------- the job


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job_env(**settings: object) -> dict[str, str]:
    """The environment of a job subprocess: no inherited CONFUSION_* but the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONFUSION_", "BYTEWAX_"))}
    env["PYTHONPATH"] = str(REPO)
    env["RUST_BACKTRACE"] = "0"
    env["CONFUSION_PROGRESS"] = "off"
    for name, value in settings.items():
        env[name if name.startswith("CONFUSION_") else f"CONFUSION_{name.upper()}"] = str(value)
    return env


def init_recovery(directory: Path, partitions: int = 1) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [PYTHON, "-m", "bytewax.recovery", str(directory), str(partitions)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )


class Job:
    """``python -m bytewax.run flows.confusion`` as one or more OS processes.

    ``processes > 1`` runs a Bytewax cluster of that many processes on loopback (``-i/-a``),
    each with ``workers`` workers. Output of every start is appended to ``log``.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        *,
        recovery: Path | None = None,
        workers: int = 1,
        processes: int = 1,
        snapshot_s: int = 1,
    ) -> None:
        self.env = dict(env)
        self.log = log
        self.recovery = recovery
        self.workers, self.processes, self.snapshot_s = workers, processes, snapshot_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self.starts = 0

    def _args(self, index: int, addresses: str) -> list[str]:
        args = [PYTHON, "-m", "bytewax.run", "flows.confusion"]
        if self.recovery is not None:
            args += ["-r", str(self.recovery), "-s", str(self.snapshot_s), "-b", "0"]
        if self.processes > 1:
            args += ["-i", str(index), "-a", addresses]
        if self.workers > 1:
            args += ["-w", str(self.workers)]
        return args

    def start(self) -> None:
        assert not self.running()
        addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(self.processes))
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n=== start {self.starts} ===\n".encode())
            self.procs = [
                subprocess.Popen(
                    self._args(i, addresses),
                    env=self.env,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                for i in range(self.processes)
            ]

    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def assert_alive(self) -> None:
        """Every process still runs (the job never ends by itself on an unbounded topic)."""
        if not all(p.poll() is None for p in self.procs):
            raise AssertionError(f"the job died on its own:\n{self.output()[-3000:]}")

    def kill9(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(30)

    def wait(self, timeout: float) -> list[int]:
        """Wait for a bounded run to end; the exit codes."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        return [p.returncode for p in self.procs]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# ----------------------------------------------------------------------------- fault proxy


def _read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
    """One HTTP/1.1 request: (head without the blank line, body by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


def _closing(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"])


class FaultProxy:
    """Forwards loopback HTTP to a real Elasticsearch node, one request per connection.

    ``fail_bulk(n, status)`` answers the next ``n`` ``_bulk`` requests itself with ``status``
    (e.g. 429, as a node under pressure does); ``down()`` closes the listening socket so
    connections are refused, ``up()`` listens again on the same port.
    """

    def __init__(self, upstream_url: str) -> None:
        host, _, port = upstream_url.removeprefix("http://").rstrip("/").partition(":")
        self.upstream = (host, int(port))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bulk_requests = 0
        self.failed_bulks = 0
        self.bulk_bodies: list[bytes] = []  # every bulk body forwarded to the node
        self._fail_left = 0
        self._fail_status = 429
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._closed = False
        self._flowing = threading.Event()
        self._flowing.set()

    def __enter__(self) -> FaultProxy:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.thaw()
        self.down()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def down_for(self, seconds: float) -> None:
        """Refuse connections now and accept them again ``seconds`` later."""
        self.down()
        timer = threading.Timer(seconds, lambda: None if self._closed else self.up())
        timer.daemon = True
        timer.start()

    def freeze(self) -> None:
        """Hang like a SIGSTOPped node: connections are accepted and requests read, but nothing
        is forwarded or answered until `thaw` (then every held request goes through)."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def fail_bulk(self, n: int, status: int = 429) -> None:
        with self._lock:
            self._fail_left, self._fail_status = n, status

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            head, body = request
            self._flowing.wait()
            if b" /_bulk" in head.split(b"\r\n", 1)[0]:
                with self._lock:
                    self.bulk_requests += 1
                    fail = self._fail_left > 0
                    if fail:
                        self._fail_left -= 1
                        self.failed_bulks += 1
                if fail:
                    payload = orjson.dumps(
                        {
                            "error": {
                                "type": "es_rejected_execution_exception",
                                "reason": "injected by FaultProxy",
                            },
                            "status": self._fail_status,
                        }
                    )
                    conn.sendall(
                        b"HTTP/1.1 %d Injected\r\ncontent-type: application/json\r\n"
                        b"x-elastic-product: Elasticsearch\r\ncontent-length: %d\r\n"
                        b"connection: close\r\n\r\n" % (self._fail_status, len(payload)) + payload
                    )
                    return
                with self._lock:
                    self.bulk_bodies.append(body)
            with socket.create_connection(self.upstream) as upstream:
                upstream.sendall(_closing(head) + b"\r\n\r\n" + body)
                # Tell the client too that this connection ends with the response, or it would
                # reuse it and see a "connection error" on its next request.
                response = b""
                while b"\r\n\r\n" not in response:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        return
                    response += chunk
                response_head, _, rest = response.partition(b"\r\n\r\n")
                conn.sendall(_closing(response_head) + b"\r\n\r\n" + rest)
                while chunk := upstream.recv(65536):
                    conn.sendall(chunk)
