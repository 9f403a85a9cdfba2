"""Secrets never reach the job's output: Kafka SASL/SSL passwords (from the properties file and
from the environment, even with librdkafka's configuration debug on) and Elasticsearch
credentials, on the success path and on a failing one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flows.connectors.elasticsearch.bulk import EsClientOptions, safe_url
from flows.connectors.elasticsearch.sink import ElasticsearchSink
from flows.settings import Settings
from tests.integration.pipeline import (
    IndexNameFactory,
    Job,
    TopicFactory,
    job_env,
    produce,
    sample_lines,
)

SECRETS = {
    "file": "FILE-SECRET-7f3a",
    "key": "KEY-SECRET-91bc",
    "env": "ENV-SECRET-c0de",
    "es": "ES-SECRET-5e11",
    "api": "API-SECRET-d00d",
}


def secret_env(tmp: Path, **settings: object) -> dict[str, str]:
    props = tmp / "client.properties"
    props.write_text(
        f"sasl.username=alice\nsasl.password={SECRETS['file']}\nssl.key.password={SECRETS['key']}\n"
    )
    return job_env(
        kafka_config_file=props,
        CONFUSION_KAFKA_OPT_SASL_PASSWORD=SECRETS["env"],
        CONFUSION_KAFKA_OPT_DEBUG="conf",
        **settings,
    )


def assert_no_secret(output: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in output, f"the {name} secret leaked into the job's output"


def test_secrets_stay_out_of_a_successful_run(
    kafka_bootstrap: str,
    es_url: str,
    topic: TopicFactory,
    es_index: IndexNameFactory,
    tmp_path: Path,
) -> None:
    name = topic()
    produce(kafka_bootstrap, name, [*sample_lines()[:300], b"{not json"])
    env = secret_env(
        tmp_path,
        source="kafka",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=name,
        kafka_stop_at_end="true",
        dlq_topic=topic(),
        sink="elasticsearch",
        es_url=es_url,
        es_index=es_index(),
        es_username="elastic",
        es_password=SECRETS["es"],
    )
    job = Job(env, tmp_path / "job.log")
    job.start()
    assert job.wait(120) == [0], job.output()[-3000:]
    output = job.output()
    assert_no_secret(output)
    assert "sasl.password=***" in output and "ssl.key.password=***" in output
    assert "auth elastic" in output  # the user name is not a secret
    assert "300 records" in output  # the run did its work (summary line)


def test_secrets_stay_out_of_a_failing_run(
    kafka_bootstrap: str, topic: TopicFactory, tmp_path: Path
) -> None:
    """A misconfigured client fails at start; its error names the problem, not the secrets."""
    env = secret_env(
        tmp_path,
        source="kafka",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=topic(),
        kafka_stop_at_end="true",
        CONFUSION_KAFKA_OPT_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        CONFUSION_KAFKA_OPT_SASL_MECHANISM="NO-SUCH-MECHANISM",
    )
    job = Job(env, tmp_path / "job.log")
    job.start()
    assert job.wait(120) != [0]
    output = job.output()
    assert "NO-SUCH-MECHANISM" in output  # the failure is explained...
    assert_no_secret(output)  # ...without the secrets


def test_elasticsearch_credentials_never_print(
    es_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(sink="elasticsearch", es_url=es_url, es_api_key=SECRETS["api"])
    with caplog.at_level(logging.INFO, "confusion"):
        sink = ElasticsearchSink.from_settings(settings)
    text = caplog.text + repr(sink) + repr(settings)
    assert "auth api key" in caplog.text
    assert_no_secret(text)
    with_password = EsClientOptions("http://u:pw-in-url@es:9200")
    assert "pw-in-url" not in repr(with_password)
    assert safe_url("https://u:pw@es.example:9243/x") == "https://***@es.example:9243/x"
