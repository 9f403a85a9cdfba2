"""Soak: the real job, Kafka -> Elasticsearch, fed at a steady rate for a long time; every 10 s
its RSS, lag and throughput, so memory can be seen flat after warm-up.

    python -m bench.soak --minutes 30 --rate 5000            # what scripts/drills soak runs
    python -m bench.soak --minutes 3 --rate 5000 --out soak.md

Needs the servers of ``scripts/services`` (``CONFUSION_KAFKA_BOOTSTRAP``, ``CONFUSION_ES_URL``).
The producer is ``confusion-produce --demo N --rate R`` (the demo stream, 3 models); the job
runs with a recovery directory and snapshots every 5 s, as in production. Lag is the topic's
end minus the offsets the job's last snapshot committed (``CONFUSION_KAFKA_GROUP``);
throughput is ``confusion_records_total`` from the job's own ``/metrics``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def records_total(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return float("nan")
    found = re.search(r"^confusion_records_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    bootstrap = os.environ["CONFUSION_KAFKA_BOOTSTRAP"]
    es_url = os.environ["CONFUSION_ES_URL"]
    run = uuid.uuid4().hex[:8]
    topic, index, group = f"soak-{run}", f"soak-{run}", f"soak-{run}-job"
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    recovery = tmp / "recovery"
    recovery.mkdir()
    subprocess.run([PY, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
    seconds = args.minutes * 60
    records = int(args.rate * seconds)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONFUSION_", "BYTEWAX_"))}
    base["PYTHONPATH"] = str(REPO)
    producer = subprocess.Popen(
        [PY, "-m", "flows.tools.produce", "--demo", str(records), "--rate", str(args.rate),
         "--topic", topic, "--bootstrap", bootstrap],
        env=base, stdout=subprocess.DEVNULL, stderr=(tmp / "produce.log").open("wb"),
    )  # fmt: skip
    metrics = free_port()
    job_env = {
        **base,
        "CONFUSION_SOURCE": "kafka",
        "CONFUSION_KAFKA_BOOTSTRAP": bootstrap,
        "CONFUSION_KAFKA_TOPIC": topic,
        "CONFUSION_KAFKA_GROUP": group,
        "CONFUSION_SINK": "elasticsearch",
        "CONFUSION_ES_URL": es_url,
        "CONFUSION_ES_INDEX": index,
        "CONFUSION_METRICS_PORT": str(metrics),
        "CONFUSION_METRICS_ADDR": "127.0.0.1",
        "CONFUSION_PROGRESS": "off",
    }
    # The topic must exist before the job asks for it: the producer makes it.
    deadline = time.monotonic() + 60
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    while time.monotonic() < deadline:
        if topic in consumer.list_topics(timeout=5).topics:
            break
        time.sleep(0.5)
    job = subprocess.Popen(
        [PY, "-m", "bytewax.run", "flows.confusion", "-r", str(recovery), "-s", "5", "-b", "0"],
        env=job_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp / "job.log").open("wb"),
    )  # fmt: skip
    part = TopicPartition(topic, 0)
    rows: list[tuple[float, float, int, float]] = []
    start = time.monotonic()
    last_t, last_n = start, 0.0
    print(f"soak: {args.minutes} min at {args.rate} rec/s; logs in {tmp}", file=sys.stderr)
    print("   t s   RSS MiB   lag records   rec/s", file=sys.stderr)
    try:
        while time.monotonic() - start < seconds:
            time.sleep(args.every - (time.monotonic() - start) % args.every)
            if job.poll() is not None:
                raise SystemExit(f"soak: the job died; see {tmp / 'job.log'}")
            now = time.monotonic()
            committed = consumer.committed([part], 10)[0].offset
            end = consumer.get_watermark_offsets(part, 10)[1]
            n = records_total(metrics)
            rate = (n - last_n) / (now - last_t)
            last_t, last_n = now, n
            row = (now - start, rss_mib(job.pid), end - max(committed, 0), rate)
            rows.append(row)
            print(f"{row[0]:6.0f}  {row[1]:8.1f}  {row[2]:12,}  {row[3]:7,.0f}", file=sys.stderr)
    finally:
        job.kill()
        producer.kill()
        consumer.close()
    warm = [r for r in rows if r[0] >= 60] or rows
    table = [
        f"Soak: {args.minutes:g} min at {args.rate:,} rec/s offered, Kafka (1 partition) -> job "
        f"(1 worker, snapshots every 5 s) -> Elasticsearch; load {os.getloadavg()[0]:.2f} at the end",
        "",
        "| t (s) | RSS (MiB) | lag (records) | throughput (rec/s) |",
        "|---:|---:|---:|---:|",
        *(f"| {t:.0f} | {m:.1f} | {lag:,} | {r:,.0f} |" for t, m, lag, r in rows),
        "",
        f"After the first minute: RSS {min(r[1] for r in warm):.1f} .. {max(r[1] for r in warm):.1f} "
        f"MiB, lag at most {max(r[2] for r in warm):,} records, throughput median "
        f"{sorted(r[3] for r in warm)[len(warm) // 2]:,.0f} rec/s.",
    ]
    print("\n".join(table))
    if args.out:
        args.out.write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
