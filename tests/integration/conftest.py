"""Fixtures for integration tests against a real Kafka broker and Elasticsearch node.

Where the servers come from, per server:

1. ``CONFUSION_KAFKA_BOOTSTRAP`` / ``CONFUSION_ES_URL`` from the environment, if set and
   answering (e.g. after ``eval "$(scripts/services up)"``);
2. otherwise ``scripts/services up <kafka|es>``, which reuses a server it already runs or
   starts one; a server this session started is stopped again at session end.

A server that cannot be reached or started makes the tests that need it ERROR. It is never
a skip: a green run must mean the integration tests really ran.

Every test under this directory gets the ``integration`` marker automatically.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin.NewTopic is this class, but its stubs do not re-export it.
from confluent_kafka.cimpl import NewTopic
from elasticsearch import ApiError, Elasticsearch
from elasticsearch import ConnectionError as EsConnectionError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SERVICES = REPO / "scripts" / "services"

KAFKA_ENV = "CONFUSION_KAFKA_BOOTSTRAP"
ES_ENV = "CONFUSION_ES_URL"

# Cold start downloads jars (~40 s here); the script has its own per-server readiness
# timeout (CONFUSION_SERVICES_TIMEOUT) well below this.
UP_TIMEOUT_S = 600.0
EXPORT_LINE = re.compile(r"^export ([A-Z_][A-Z0-9_]*)=(.*)$")


# --------------------------------------------------------------------- marker


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml registers it too; this keeps the directory self-contained under
    # --strict-markers without listing the marker twice.
    if not any(line.startswith("integration:") for line in config.getini("markers")):
        config.addinivalue_line(
            "markers", "integration: needs the real Kafka and Elasticsearch from scripts/services"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, not only this directory's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


# --------------------------------------------------------------------- servers


def _kafka_answers(bootstrap: str, timeout_s: float = 10.0) -> bool:
    try:
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _es_answers(url: str) -> bool:
    try:
        with Elasticsearch(url, request_timeout=10) as client:
            health = client.cluster.health(wait_for_status="yellow", timeout="5s")
    except (ApiError, EsConnectionError):
        return False
    return health["status"] in ("green", "yellow")


def _services(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVICES), *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_S,
        check=False,
    )


def _acquire(service: str, env_name: str, answers: Callable[[str], bool]) -> Iterator[str]:
    """Yield the address of ``service``; stop it afterwards only if this call started it."""
    from_env = os.environ.get(env_name)
    if from_env and answers(from_env):
        yield from_env
        return
    if from_env:
        print(f"{env_name}={from_env} does not answer; using scripts/services", file=sys.stderr)

    already_running = _services("status", service).returncode == 0
    started = time.monotonic()
    try:
        up = _services("up", service)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/services up {service} took over {UP_TIMEOUT_S:.0f}s", pytrace=False)
    exports = {m.group(1): m.group(2) for m in map(EXPORT_LINE.match, up.stdout.splitlines()) if m}
    if up.returncode != 0 or env_name not in exports:
        pytest.fail(
            f"scripts/services up {service} failed (exit {up.returncode}); a missing server is a "
            f"test failure, not a skip.\n--- stderr ---\n{up.stderr[-4000:]}",
            pytrace=False,
        )
    if not already_running:
        print(f"started {service} in {time.monotonic() - started:.1f}s", file=sys.stderr)

    # Code under test (and subprocesses it spawns) reads the same variables.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(env_name, exports[env_name])
        try:
            yield exports[env_name]
        finally:
            if not already_running:
                _services("down", service)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka broker (KRaft, single node, loopback)."""
    yield from _acquire("kafka", KAFKA_ENV, _kafka_answers)


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """``http://host:port`` of a real Elasticsearch 9 node (single node, loopback)."""
    yield from _acquire("es", ES_ENV, _es_answers)


# --------------------------------------------------------------------- Kafka helpers


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def unique_name(request: pytest.FixtureRequest, prefix: str) -> str:
    """A name that is unique per call and says which test made it (valid for both
    Kafka topics and Elasticsearch indices: lowercase, ``[a-z0-9-]``)."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"


class TopicFactory(Protocol):
    def __call__(self, partitions: int = 1, *, config: Mapping[str, str] | None = None) -> str: ...


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int, timeout_s: float) -> None:
    # CreateTopics returns before every partition has a leader in the metadata that
    # producers and consumers see; wait for that so tests do not race topic creation.
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leaders after {timeout_s}s: {meta}")
        time.sleep(0.1)


@pytest.fixture
def topic(kafka_admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Factory: ``topic(partitions=3)`` creates a fresh topic and returns its name.
    Every topic made this way is deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 1, *, config: Mapping[str, str] | None = None) -> str:
        name = unique_name(request, "it")
        new = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
        )
        kafka_admin.create_topics([new], operation_timeout=30)[name].result(timeout=30)
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions, timeout_s=30)
        return name

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


# --------------------------------------------------------------------- Elasticsearch helpers


@pytest.fixture(scope="session")
def es_client(es_url: str) -> Iterator[Elasticsearch]:
    with Elasticsearch(es_url, request_timeout=30) as client:
        yield client


class IndexNameFactory(Protocol):
    def __call__(self, suffix: str = "") -> str: ...


@pytest.fixture
def es_index(
    es_client: Elasticsearch, request: pytest.FixtureRequest
) -> Iterator[IndexNameFactory]:
    """Factory: ``es_index()`` returns a fresh, unused index name (nothing is created).

    After the test, every index and index template whose name starts with a returned name
    is deleted, so tests may derive names from it (``f"{name}-2025.01"``, a template
    ``f"{name}-template"``) and still leave nothing behind.
    """
    names: list[str] = []

    def make(suffix: str = "") -> str:
        name = unique_name(request, "it") + (f"-{suffix}" if suffix else "")
        names.append(name)
        return name

    yield make
    for name in names:
        # Resolve the wildcard first and delete by exact names: a server with
        # action.destructive_requires_name=true refuses wildcard deletes.
        indices = es_client.indices.get(
            index=f"{name}*", expand_wildcards="all", allow_no_indices=True
        )
        if indices:
            es_client.indices.delete(index=",".join(indices.body))
        # 404 (with an empty list) when no template matches the pattern.
        found = es_client.options(ignore_status=404).indices.get_index_template(name=f"{name}*")
        for template in found.body.get("index_templates", []):
            es_client.indices.delete_index_template(name=template["name"])
