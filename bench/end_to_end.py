"""End to end: Kafka -> job -> Elasticsearch on the real servers, throughput and latency.

Uses ``CONFUSION_KAFKA_BOOTSTRAP`` / ``CONFUSION_ES_URL`` when set; otherwise starts a private
pair with ``scripts/services up`` (own ports and run directory) and stops it at the end. Every run
uses its own topics and indices and deletes them afterwards. ``BENCH_NO_SERVICES=1`` skips the
benchmark instead of starting servers (the smoke test does that).

* Sustained: N records are produced first (``python -m flows.tools.produce FILE``); then the job
  (`bench/flow_job.py` with its real Elasticsearch sink, ``CONFUSION_KAFKA_STOP_AT_END=true``)
  reads them all and exits. Rate = N over its in-process time, which includes installing the
  index templates and the last bulk.
* Latency: the job runs on an empty topic; records without ``ts`` are produced at a fixed rate
  (``python -m flows.tools.produce --rate R``), so each record's event time is its Kafka message
  time, set when it is produced. A poller searches the index every 50 ms; a document's latency
  is when the poller first saw it minus ``window.end`` (the produce time of the record that
  completed it). It is split into produce -> document built (``emitted_at``) and built -> searchable
  (sink, Elasticsearch refresh, poll interval). It runs twice: as shipped, then with
  ``CONFUSION_ES_FLUSH_INTERVAL=0.1`` and the index's ``refresh_interval`` set to 100ms by the
  benchmark once the job has created it (``--es-flush-interval``/``--refresh-interval`` run one
  setting of your own instead).

    python bench/end_to_end.py [--quick] [--records N] [--rate R] [--seconds S] [--json PATH]
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PYTHON,
    ROOT,
    Report,
    Section,
    Target,
    bench_env,
    command_line,
    finish,
    num,
    parser,
    sample_records,
    scaled_stream,
    table,
)
from flows.connectors.elasticsearch.mapping import REFRESH_INTERVAL
from flows.settings import Settings

MODELS = 3
EMIT_EVERY = 100
SERVICES = ROOT / "scripts" / "services"
TUNED = {"flush": "0.1", "refresh": "100ms"}
PRIVATE_KAFKA_PORT = 29092
PRIVATE_ES_PORT = 29200


class Skip(Exception):
    """The benchmark cannot run here; the message says why."""


def _missing_connectors() -> list[str]:
    names = ("flows.connectors.kafka.source", "flows.connectors.elasticsearch.sink")
    return [n for n in names if importlib.util.find_spec(n) is None]


@contextlib.contextmanager
def services() -> Iterator[dict[str, str]]:
    """Addresses of Kafka and Elasticsearch: the environment's, or a private pair started here.

    The private pair (``scripts/services up`` on ports 29092/29200 with its own run directory)
    never touches servers that other people's tests use, and is always stopped at the end.
    """
    names = ("CONFUSION_KAFKA_BOOTSTRAP", "CONFUSION_ES_URL")
    if all(os.environ.get(n) for n in names):
        yield {n: os.environ[n] for n in names}
        return
    if not SERVICES.exists():
        raise Skip(f"{', '.join(names)} are not set and scripts/services does not exist")
    if os.environ.get("BENCH_NO_SERVICES"):
        raise Skip(f"{', '.join(names)} are not set and BENCH_NO_SERVICES forbids starting servers")
    with tempfile.TemporaryDirectory(prefix="confusion-bench-services-") as run_dir:
        env = {
            **os.environ,
            "CONFUSION_KAFKA_PORT": str(PRIVATE_KAFKA_PORT),
            "CONFUSION_ES_PORT": str(PRIVATE_ES_PORT),
            "CONFUSION_SERVICES_DIR": run_dir,
        }
        print(
            f"  starting private Kafka :{PRIVATE_KAFKA_PORT} and Elasticsearch "
            f":{PRIVATE_ES_PORT} (scripts/services up)...",
            file=sys.stderr,
            flush=True,
        )
        try:
            up = subprocess.run(
                [str(SERVICES), "up"],
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
                env=env,
            )
            if up.returncode != 0:
                raise Skip(
                    f"scripts/services up failed ({up.returncode}): {up.stderr.strip()[-600:]}"
                )
            found = {}
            for line in up.stdout.splitlines():
                key, sep, value = line.removeprefix("export ").partition("=")
                if sep and key in names:
                    found[key] = value.strip().strip("'\"")
            if set(found) != set(names):
                raise Skip(f"scripts/services up printed no {names}: {up.stdout!r}")
            yield found
        finally:
            subprocess.run(
                [str(SERVICES), "down"], capture_output=True, check=False, timeout=300, env=env
            )


class Cluster:
    """Topics and indices of one run, deleted at the end."""

    def __init__(self, addresses: dict[str, str]) -> None:
        from confluent_kafka.admin import AdminClient
        from elasticsearch import Elasticsearch

        self.bootstrap = addresses["CONFUSION_KAFKA_BOOTSTRAP"]
        self.es_url = addresses["CONFUSION_ES_URL"]
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})
        self.es = Elasticsearch(self.es_url, request_timeout=30)
        self.topics: list[str] = []
        self.indices: list[str] = []

    def topic(self, name: str) -> str:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        futures = self.admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        for future in futures.values():
            future.result(timeout=30)
        self.topics += [name, f"{name}.dead-letter"]
        return name

    def index(self, name: str) -> str:
        self.indices += [name, f"{name}-latest"]
        return name

    def count(self, index: str) -> int:
        self.es.indices.refresh(index=index)
        return int(self.es.count(index=index)["count"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            existing = set(self.admin.list_topics(timeout=10).topics)
            doomed = [t for t in self.topics if t in existing]
            if doomed:
                for future in self.admin.delete_topics(doomed).values():
                    future.result(timeout=30)
        for index in self.indices:
            with contextlib.suppress(Exception):
                self.es.indices.delete(index=index, ignore_unavailable=True)


def _producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "log_level": 2,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )


def _send(producer: Any, topic: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value)
            return
        except BufferError:
            producer.poll(0.05)


def _has_produce() -> bool:
    return importlib.util.find_spec("flows.tools.produce") is not None


def produce_file(bootstrap: str, topic: str, path: Path, rate: float = 0) -> float:
    """Send every line of ``path`` (at ``rate`` records/s, 0 = flat out); seconds taken.

    Uses ``python -m flows.tools.produce`` when the project has it, else a producer of its own.
    """
    start = time.perf_counter()
    if _has_produce():
        subprocess.run(
            [
                PYTHON,
                "-m",
                "flows.tools.produce",
                str(path),
                "--topic",
                topic,
                "--bootstrap",
                bootstrap,
                "--rate",
                str(rate),
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=bench_env(),
        )
        return time.perf_counter() - start
    producer = _producer(bootstrap)
    with path.open("rb") as f:
        for i, line in enumerate(f):
            if rate > 0:
                pause = start + i / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            _send(producer, topic, line.rstrip(b"\n"))
            if i % 1_000 == 0:
                producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("Kafka producer could not deliver every record in 120 s")
    return time.perf_counter() - start


def _job(env: dict[str, str], module: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [PYTHON, "-m", "bytewax.run", module],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:] if log.exists() else ""


def sustained(cluster: Cluster, n: int, scratch: Path, stamp: str) -> dict[str, Any]:
    topic = cluster.topic(f"bench-sustained-{stamp}")
    index = cluster.index(f"bench-sustained-{stamp}")
    produce_s = produce_file(cluster.bootstrap, topic, scaled_stream(n))
    result = scratch / "sustained.jsonl"
    env = bench_env(
        source="kafka",
        kafka_bootstrap=cluster.bootstrap,
        kafka_topic=topic,
        kafka_stop_at_end="true",
        sink="elasticsearch",
        es_url=cluster.es_url,
        es_index=index,
        emit_every=EMIT_EVERY,
    )
    env.update(BENCH_RESULT=str(result), BENCH_SINK="real")
    log = scratch / "sustained.log"
    proc = _job(env, "bench.flow_job", log)
    try:
        code: int | None = proc.wait(120 + n / 5_000)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _stop(proc)
    if code != 0 or not result.exists():
        raise RuntimeError(f"the sustained job failed ({code}):\n{_tail(log)}")
    line = json.loads(result.read_text().splitlines()[-1])
    seconds = line["ended"] - line["built"]
    expected = MODELS * -(-n // EMIT_EVERY)
    found = cluster.count(index)
    if found != expected:
        raise RuntimeError(f"sustained run: {found} documents in {index}, expected {expected}")
    return {
        "records": n,
        "produce_s": produce_s,
        "seconds": seconds,
        "documents": found,
        "rate": n / seconds,
    }


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class Poller(threading.Thread):
    """Searches the index every ``every`` seconds and notes when each document first shows."""

    def __init__(self, cluster: Cluster, index: str, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.es, self.index, self.every = cluster.es, index, every
        self.seen: dict[tuple[str, int], tuple[int, int, int]] = {}  # -> (seen, end, emitted)
        self.latest: dict[str, int] = {}
        self.stop = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            floor = min(self.latest.values()) if len(self.latest) == MODELS else 0
            try:
                hits = self.es.search(
                    index=self.index,
                    size=10_000,
                    query={"range": {"seq": {"gt": floor}}},
                    source_includes=["model", "seq", "window.end", "emitted_at"],
                    ignore_unavailable=True,
                )["hits"]["hits"]
            except Exception:  # the index may not exist yet; a slow search is retried
                self.errors += 1
                hits = []
            now = int(time.time() * 1000)
            for hit in hits:
                doc = hit["_source"]
                key = (doc["model"], int(doc["seq"]))
                if key not in self.seen:
                    self.seen[key] = (now, _ms(doc["window"]["end"]), _ms(doc["emitted_at"]))
                    self.latest[key[0]] = max(self.latest.get(key[0], 0), key[1])
            self.stop.wait(self.every)


def _untimed(path: Path, start: int, n: int) -> Path:
    """Records ``start ..`` of the sample without ``ts``: the Kafka message time stands in."""
    sample = sample_records()
    with path.open("wb") as f:
        for i in range(start, start + n):
            rec = sample[i % len(sample)]
            f.write(
                orjson.dumps(
                    {
                        "id": f"l-{i + 1:07d}",
                        "label": rec["label"],
                        "predictions": rec["predictions"],
                    }
                )
                + b"\n"
            )
    return path


def latency(
    cluster: Cluster, rate: int, seconds: float, scratch: Path, stamp: str, tuning: dict[str, str]
) -> dict[str, Any]:
    topic = cluster.topic(f"bench-latency-{stamp}")
    index = cluster.index(f"bench-latency-{stamp}")
    env = bench_env(
        source="kafka",
        kafka_bootstrap=cluster.bootstrap,
        kafka_topic=topic,
        sink="elasticsearch",
        es_url=cluster.es_url,
        es_index=index,
        emit_every=EMIT_EVERY,
    )
    if "flush" in tuning:
        env["CONFUSION_ES_FLUSH_INTERVAL"] = tuning["flush"]
    log = scratch / "latency.log"
    proc = _job(env, "flows.confusion", log)
    poller = Poller(cluster, index)
    poller.start()
    total = int(rate * seconds)
    warm_up = _untimed(scratch / "warm-up.jsonl", 0, EMIT_EVERY)
    paced = _untimed(scratch / "paced.jsonl", EMIT_EVERY, total)
    try:
        # Warm-up: one emission per model, searchable before the clock starts (job ready).
        produce_file(cluster.bootstrap, topic, warm_up)
        deadline = time.monotonic() + 120
        while len(poller.seen) < MODELS:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the latency job never got ready:\n{_tail(log)}")
            time.sleep(0.05)
        warm = set(poller.seen)
        if "refresh" in tuning:
            cluster.es.indices.put_settings(
                index=index, settings={"refresh_interval": tuning["refresh"]}
            )
        produce_file(cluster.bootstrap, topic, paced, rate)
        expected = MODELS * ((EMIT_EVERY + total) // EMIT_EVERY)
        deadline = time.monotonic() + 60
        while len(poller.seen) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        poller.stop.set()
        poller.join(5)
        _stop(proc)
    measured = [v for k, v in poller.seen.items() if k not in warm]
    if not measured:
        raise RuntimeError(f"no document became searchable:\n{_tail(log)}")
    # The rate really offered, from the produce times the documents carry (model by model).
    spans = []
    for model in {k[0] for k in poller.seen}:
        mine = sorted(
            (seq, end)
            for (m, seq), (_, end, _) in poller.seen.items()
            if m == model and (m, seq) not in warm
        )
        if len(mine) > 1 and mine[-1][1] > mine[0][1]:
            spans.append((mine[-1][0] - mine[0][0]) / ((mine[-1][1] - mine[0][1]) / 1000))
    offered = sorted(spans)[len(spans) // 2] if spans else 0.0
    return {
        "offered": offered,
        "records": total,
        "documents": len(measured),
        "expected": expected - len(warm),
        "search_errors": poller.errors,
        "total_ms": sorted(seen - end for seen, end, _ in measured),
        "built_ms": sorted(emitted - end for _, end, emitted in measured),
        "visible_ms": sorted(seen - emitted for seen, _, emitted in measured),
    }


def _describe(tuning: dict[str, str]) -> str:
    if not tuning:
        return "as shipped"
    names = {"flush": "CONFUSION_ES_FLUSH_INTERVAL=", "refresh": "refresh_interval="}
    return ", ".join(names[k] + v for k, v in tuning.items())


def pct(values: list[int], q: float) -> float:
    return float(values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))])


def main(argv: list[str] | None = None) -> Report:
    started = time.perf_counter()
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=None, help="sustained run (default 500,000)")
    p.add_argument("--rate", type=int, default=10_000, help="offered records/s for latency")
    p.add_argument("--seconds", type=float, default=None, help="latency run (default 20)")
    p.add_argument(
        "--es-flush-interval",
        default=None,
        help="experiment: CONFUSION_ES_FLUSH_INTERVAL for the latency job",
    )
    p.add_argument(
        "--refresh-interval",
        default=None,
        help="experiment: index.refresh_interval set on the latency index (e.g. 100ms)",
    )
    args = p.parse_args(argv)
    records = args.records or (3_000 if args.quick else 500_000)
    seconds = args.seconds or (2.0 if args.quick else 20.0)
    report = Report(
        "end_to_end",
        "End to end: Kafka -> job -> Elasticsearch",
        command_line("end_to_end.py", argv),
    )
    missing = _missing_connectors()
    if missing:
        report.skipped = (
            f"the connectors are not there yet ({', '.join(missing)}); nothing was measured"
        )
        finish(report, args, started)
        return report
    stamp = f"{int(time.time())}-{os.getpid()}"
    try:
        with services() as addresses, tempfile.TemporaryDirectory(prefix="confusion-e2e-") as tmp:
            cluster = Cluster(addresses)
            try:
                sus = sustained(cluster, records, Path(tmp), stamp)
                chosen = {
                    k: v
                    for k, v in (
                        ("flush", args.es_flush_interval),
                        ("refresh", args.refresh_interval),
                    )
                    if v
                }
                # As shipped, then (unless asked for one setting) with low-latency settings.
                tunings = [chosen] if chosen or args.quick else [{}, TUNED]
                lats = [
                    (t, latency(cluster, args.rate, seconds, Path(tmp), f"{stamp}-{i}", t))
                    for i, t in enumerate(tunings)
                ]
            finally:
                cluster.close()
    except Skip as exc:
        report.skipped = str(exc)
        finish(report, args, started)
        return report
    report.sections.append(
        Section(
            "Sustained: produce first, then read everything (one worker, emit every 100)",
            table(
                ("records", "documents", "job s", "records/s", "produce s (not in the rate)"),
                [
                    (
                        f"{sus['records']:,}",
                        f"{sus['documents']:,}",
                        f"{sus['seconds']:.2f}",
                        num(sus["rate"]),
                        f"{sus['produce_s']:.2f}",
                    )
                ],
            ),
        )
    )
    rows = []
    for tuning, lat in lats:
        rows += [
            (
                _describe(tuning),
                name,
                f"{pct(lat[key], 0.5):.0f}",
                f"{pct(lat[key], 0.9):.0f}",
                f"{pct(lat[key], 0.99):.0f}",
                f"{max(lat[key]):.0f}",
            )
            for name, key in (
                ("produce -> searchable", "total_ms"),
                ("produce -> document built", "built_ms"),
                ("built -> searchable", "visible_ms"),
            )
        ]
    report.sections.append(
        Section(
            f"Latency at {args.rate:,} records/s offered for {seconds:g} s (ms)",
            table(("settings", "stage", "p50", "p90", "p99", "max"), rows),
            [
                f"{_describe(t)}: {num(lat['offered'])} records/s really offered (from the documents' "
                f"produce times), {lat['documents']:,} of {lat['expected']:,} documents seen"
                for t, lat in lats
            ]
            + [
                "built -> searchable: the sink's buffering (CONFUSION_ES_FLUSH_INTERVAL, "
                f"{Settings.model_fields['es_flush_interval'].default} s by default), the bulk "
                "request, the index's refresh (the templates set "
                f"{REFRESH_INTERVAL}) and the 50 ms poll."
            ],
        )
    )
    tuning, lat = lats[0]
    p99 = pct(lat["total_ms"], 0.99)
    tuned = [(t, other) for t, other in lats[1:]]
    extra = "".join(
        f"; {_describe(t)}: p99 {pct(o['total_ms'], 0.99):.0f} ms, p50 "
        f"{pct(o['total_ms'], 0.5):.0f} ms"
        for t, o in tuned
    )
    report.targets += [
        Target(
            ">= 50,000 records/s end to end (sustained)",
            f"{num(sus['rate'])} records/s",
            sus["rate"] >= 50_000,
        ),
        Target(
            "p99 produce -> searchable < 1 s at 10,000 records/s offered",
            f"{_describe(tuning)}: p99 {p99:.0f} ms (p50 {pct(lat['total_ms'], 0.5):.0f} ms) "
            f"at {num(lat['offered'])} records/s{extra}",
            p99 < 1000 and args.rate >= 10_000,
        ),
    ]
    report.data = {
        "sustained": sus,
        "latency": [
            {
                "tuning": t,
                **{k: v for k, v in o.items() if not k.endswith("_ms")},
                "p50_ms": pct(o["total_ms"], 0.5),
                "p99_ms": pct(o["total_ms"], 0.99),
            }
            for t, o in lats
        ],
    }
    report.notes.append(
        "Topic of 1 partition, job with 1 worker; Kafka, Elasticsearch, the "
        "producer, the poller and the job share the machine's 2 cores."
    )
    finish(report, args, started)
    return report


if __name__ == "__main__":
    main()
