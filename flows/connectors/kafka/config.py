"""librdkafka client settings, built once for every client: the source, dead letters, producer.

Layering: ``CONFUSION_KAFKA_CONFIG_FILE`` (Java properties, e.g. a mounted secret), then
``CONFUSION_KAFKA_BOOTSTRAP``, then ``CONFUSION_KAFKA_OPT_*`` variables: the usual layering of a
secret file with per-deployment overrides. Secrets never print in clear (`describe`, `masked`).
Imports only confluent_kafka and prometheus_client, so the producer tool stays light.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
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


_BROKER = re.compile(r"^(?:\w+://)?([^/\s]+:\d+)/")


def _setting(name: str) -> str:
    """Where a librdkafka property is set: the variable or the properties file."""
    variable = "CONFUSION_KAFKA_OPT_" + name.upper().replace(".", "_")
    return f"{name} ({variable} or CONFUSION_KAFKA_CONFIG_FILE)"


def tls_verdict(address: str, ca_location: str | None) -> str | None:
    """Why the certificate of the broker at ``host:port`` fails verification against
    ``ca_location``, in OpenSSL's words (``certificate has expired``, ``unable to get local
    issuer certificate``...): librdkafka says only "certificate verify failed"."""
    import socket
    import ssl

    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=ca_location) if ca_location else None
    if context is None:
        context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]")),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message)
    except (OSError, ValueError):
        return None


_SECURITY_CODES = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._SSL,
}


def is_security_error(err: KafkaError) -> bool:
    """A TLS or SASL failure: retrying with the same settings cannot help."""
    return err.code() in _SECURITY_CODES


def security_problem(err: KafkaError, config: Mapping[str, Any]) -> str | None:
    """A sentence naming the setting to fix when ``err`` is a TLS or SASL failure, else None.

    Never quotes a secret: only librdkafka's message (which holds none) and setting names.
    """
    code = err.code()
    if code != KafkaError._SSL and code in _SECURITY_CODES:
        user = config.get("sasl.username", "(none)")
        mechanism = config.get("sasl.mechanism", config.get("sasl.mechanisms", "GSSAPI"))
        return (
            f"Kafka refused the credentials of user {user!r} ({mechanism}): {err.str()}. "
            f"Check {_setting('sasl.password')}, {_setting('sasl.username')} and "
            f"{_setting('sasl.mechanism')}."
        )
    if code == KafkaError._SSL:
        ca = config.get("ssl.ca.location")
        found = _BROKER.match(err.str())
        broker = found.group(1) if found else ""
        why = tls_verdict(broker, ca) if broker else None
        if why and "expired" in why:
            return (
                f"the TLS certificate of broker {broker} has expired ({why}): renew it on the "
                f"broker; the job verifies it against {_setting('ssl.ca.location')}="
                f"{ca or 'the system CAs'}."
            )
        return (
            f"the TLS handshake with Kafka failed ({why or err.str()}): the broker's certificate "
            f"is not signed by a CA in {_setting('ssl.ca.location')}={ca or 'the system CAs'}, "
            f"or does not name the host (ssl.endpoint.identification.algorithm)."
        )
    return None


def metadata_or_refusal(
    admin: Any, refused: list[KafkaError], config: Mapping[str, Any], timeout: float
) -> Any:
    """``admin.list_topics()`` within ``timeout`` s, asked in 1 s slices so that a TLS or SASL
    refusal (collected in ``refused`` by the admin's ``error_cb``) stops the wait at once as a
    `ConfigError` naming the setting, instead of a timeout that says nothing."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(timeout=max(min(1.0, deadline - time.monotonic()), 0.1))
        except KafkaException:
            admin.poll(0)  # serves the error callback
            if refused:
                raise ConfigError(str(security_problem(refused[-1], config))) from None
            if time.monotonic() >= deadline:
                raise
