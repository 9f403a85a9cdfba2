"""librdkafka client settings, built once for every client: the source, dead letters, producer.

Layering: ``CONFUSION_KAFKA_CONFIG_FILE`` (Java properties, e.g. a mounted secret), then
``CONFUSION_KAFKA_BOOTSTRAP``, then ``CONFUSION_KAFKA_OPT_*`` variables: the usual layering of a
secret file with per-deployment overrides. Secrets never print in clear (`describe`, `masked`).
Imports only confluent_kafka and prometheus_client, so the producer tool stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError
from prometheus_client import Counter

from flows.errors import ConfigError
from flows.settings import kafka_options

KAFKA_ERRORS = Counter(
    "confusion_kafka_errors",
    "Kafka errors reported to the job (logged, not raised)",
    ["client", "code"],
)

# A property whose name contains one of these is a secret: never printed in clear.
SECRET_MARKERS = ("password", "secret", "key", "token", "credential", "jaas", "oauthbearer.config")
MASK = "***"
METADATA_TIMEOUT_S = 10.0


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def masked(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` fit for logs: secret values replaced by ``***``, callbacks dropped."""
    return {
        key: (MASK if is_secret(key) else value)
        for key, value in config.items()
        if not callable(value)
    }


def describe(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(masked(config).items()))


def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines (Java properties style); ``#``/``!`` start a comment line."""
    props: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"CONFUSION_KAFKA_CONFIG_FILE={path} cannot be read: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"CONFUSION_KAFKA_CONFIG_FILE={path}, line {number}: expected key=value"
            )  # the line itself may hold a secret: not echoed
        props[key.strip()] = value.strip()
    return props


def client_config(
    config_file: Path | None, bootstrap: str | None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """librdkafka settings: the properties file, then the bootstrap, then ``_OPT_`` variables
    (read from ``env``, the process environment by default); later layers win."""
    config: dict[str, str] = {}
    if config_file is not None:
        config.update(read_properties(config_file))
    if bootstrap:
        config["bootstrap.servers"] = bootstrap
    config.update(kafka_options(env))
    return config


def count_error(client: str, err: KafkaError) -> None:
    """Count an error a client reported (``confusion_kafka_errors{client,code}``)."""
    KAFKA_ERRORS.labels(client=client, code=err.name()).inc()
