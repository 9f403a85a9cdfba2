"""``confusion-produce`` against the real broker: order, spreading, pacing, failures, topics."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from flows.demo import demo_lines
from tests.integration.pipeline import PYTHON, REPO, TopicFactory, read_topic, sample_lines


def run_produce(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFUSION_")}
    env.update(PYTHONPATH=str(REPO), CONFUSION_KAFKA_BOOTSTRAP=bootstrap)
    return subprocess.run(
        [PYTHON, "-m", "flows.tools.produce", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Iterator[str]:
    """A topic name that does not exist yet; deleted afterwards if the tool created it."""
    name = f"it-produce-{uuid.uuid4().hex[:8]}"
    yield name
    if name in kafka_admin.list_topics(timeout=10).topics:
        kafka_admin.delete_topics([name], operation_timeout=30)[name].result(timeout=30)


def test_file_to_a_new_topic_keeps_the_file_order_on_partition_0(
    kafka_bootstrap: str, kafka_admin: AdminClient, new_topic: str, tmp_path: Path
) -> None:
    lines = sample_lines()[:300]
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(lines[:150]) + b"\n\n" + b"\n".join(lines[150:]) + b"\n")

    done = run_produce(kafka_bootstrap, str(path), "--topic", new_topic, "--partitions", "3")

    assert done.returncode == 0, done.stderr
    assert f"created topic {new_topic} with 3 partitions" in done.stderr
    assert f"300 records written to {new_topic}" in done.stderr
    assert len(kafka_admin.list_topics(timeout=10).topics[new_topic].partitions) == 3
    assert [m.value() for m in read_topic(kafka_bootstrap, new_topic, 0)] == lines
    assert read_topic(kafka_bootstrap, new_topic, 1) == []


def test_spread_demo_over_every_partition(kafka_bootstrap: str, topic: TopicFactory) -> None:
    name = topic(partitions=3)
    done = run_produce(kafka_bootstrap, "--demo", "3000", "--topic", name, "--spread")
    assert done.returncode == 0, done.stderr
    parts = [[m.value() for m in read_topic(kafka_bootstrap, name, p)] for p in range(3)]
    lines = demo_lines(2026, 3000)
    assert parts == [lines[0::3], lines[1::3], lines[2::3]]  # round-robin, order kept in each


def test_rate_is_held(kafka_bootstrap: str, topic: TopicFactory) -> None:
    done = run_produce(kafka_bootstrap, "--demo", "300", "--topic", topic(), "--rate", "500")
    assert done.returncode == 0, done.stderr
    found = re.search(r"300 records written to \S+ in ([0-9.]+)s", done.stderr)
    assert found, done.stderr
    assert float(found.group(1)) >= 0.55  # 300 records at 500/s take 0.6 s


def test_failed_deliveries_make_it_exit_non_zero(
    kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    name = topic(config={"max.message.bytes": "1000"})
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"id": "big", "pad": "' + b"x" * 5000 + b'"}\n')
    done = run_produce(kafka_bootstrap, str(path), "--topic", name)
    assert done.returncode == 1
    assert "0 records written" in done.stderr and "1 failed" in done.stderr
    assert "too large" in done.stderr


def test_a_partition_the_topic_lacks_is_refused(kafka_bootstrap: str, topic: TopicFactory) -> None:
    done = run_produce(
        kafka_bootstrap, "--demo", "10", "--topic", topic(partitions=2), "--partition", "5"
    )
    assert done.returncode == 2
    assert "--partition 5 does not exist" in done.stderr
