"""librdkafka settings: layering of the properties file and the environment, and masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.connectors.kafka.config import client_config, describe, read_properties
from flows.connectors.kafka.source import KafkaBatchSource
from flows.errors import ConfigError
from flows.settings import Settings


def test_environment_overrides_the_properties_file(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text(
        "# a comment\n! another\n\nbootstrap.servers = file:9092\n"
        "security.protocol=SASL_SSL\nsasl.password=from-file\nclient.id=file\n"
    )
    settings = Settings(
        source="kafka", kafka_bootstrap="env:9092", kafka_topic="t", kafka_config_file=props
    )
    env = {
        "CONFUSION_KAFKA_OPT_CLIENT_ID": "env",
        "CONFUSION_KAFKA_OPT_SASL_MECHANISM": "PLAIN",
        "OTHER": "ignored",
    }
    assert client_config(settings.kafka_config_file, settings.kafka_bootstrap, env) == {
        "bootstrap.servers": "env:9092",
        "security.protocol": "SASL_SSL",
        "sasl.password": "from-file",
        "client.id": "env",
        "sasl.mechanism": "PLAIN",
    }


@pytest.mark.parametrize(
    "name",
    [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
        "SASL_TOKEN",
    ],
)
def test_secrets_are_masked_in_descriptions_and_reprs(name: str) -> None:
    config = {"bootstrap.servers": "b:9092", name: "hunter2"}
    assert "hunter2" not in describe(config)
    assert f"{name}=***" in describe(config)
    assert "hunter2" not in repr(KafkaBatchSource(["t"], config))
    assert "b:9092" in describe(config)


def test_malformed_properties_line_is_refused_without_echoing_it(tmp_path: Path) -> None:
    props = tmp_path / "bad.properties"
    props.write_text("client.id=x\nsasl.password hunter2\n")
    with pytest.raises(ConfigError, match="line 2") as err:
        read_properties(props)
    assert "hunter2" not in str(err.value)
