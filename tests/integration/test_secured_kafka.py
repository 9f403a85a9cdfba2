"""Kafka over SASL_SSL (SCRAM-SHA-512 over TLS) end to end on loopback: confusion-produce, the
source and the dead letters all go through the broker's secured listener (certificates made by
scripts/certs with openssl, the SCRAM user made when scripts/services formats the broker). A
wrong CA, a wrong password and an expired broker certificate each stop the job with a message
naming the setting, and no secret reaches any output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.integration.drills import services
from tests.integration.pipeline import (
    REPO,
    Job,
    TopicFactory,
    job_env,
    periodic,
    recompute,
    sample_lines,
    write_lines,
)

BAD = b"{not json"


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str) -> dict[str, str]:
    """How to reach the secured listeners of the session's broker (scripts/services)."""
    status = services("status", "kafka")
    assert kafka_bootstrap in status, (
        f"{kafka_bootstrap} is not the broker of scripts/services ({status}); the secured "
        "listeners exist only there"
    )
    info = dict(line.split("=", 1) for line in services("secured").splitlines() if "=" in line)
    info["SCRAM_PASSWORD"] = Path(info["SCRAM_PASSWORD_FILE"]).read_text().strip()
    return info


def client_file(
    tmp: Path, secured: dict[str, str], *, ca: str = "ca.pem", password: str | None = None
) -> Path:
    """A client properties file, as a mounted secret would be."""
    path = tmp / f"client-{ca}-{password is None}.properties"
    path.write_text(
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={secured['SCRAM_MECHANISM']}\n"
        f"sasl.username={secured['SCRAM_USER']}\n"
        f"sasl.password={password or secured['SCRAM_PASSWORD']}\n"
        f"ssl.ca.location={secured['CERTS']}/{ca}\n"
    )
    return path


def produce_secured(
    bootstrap: str, props: Path, topic: str, data: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFUSION_")}
    env.update(
        PYTHONPATH=str(REPO),
        CONFUSION_KAFKA_BOOTSTRAP=bootstrap,
        CONFUSION_KAFKA_CONFIG_FILE=str(props),
    )
    return subprocess.run(
        [sys.executable, "-m", "flows.tools.produce", str(data), "--topic", topic],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_source_dead_letters_and_producer_over_sasl_ssl(
    secured: dict[str, str], topic: TopicFactory, tmp_path: Path
) -> None:
    bootstrap = secured["KAFKA_SASL_BOOTSTRAP"]
    props = client_file(tmp_path, secured)
    lines = [*sample_lines()[:600], BAD, *sample_lines()[600:1200]]
    data = write_lines(tmp_path / "data.jsonl", lines)
    name, dlq = topic(), topic()
    produced = produce_secured(bootstrap, props, name, data)
    assert produced.returncode == 0, produced.stderr
    assert "1201 records written" in produced.stderr.replace(",", "")

    out = tmp_path / "docs.jsonl"
    env = job_env(
        source="kafka",
        kafka_bootstrap=bootstrap,
        kafka_config_file=props,
        kafka_topic=name,
        kafka_stop_at_end="true",
        dlq_topic=dlq,
        sink="jsonl",
        output=out,
        alerts_output=tmp_path / "alerts.jsonl",
        window_size=300,
        emit_every=100,
    )
    job = Job(env, tmp_path / "job.log")
    job.start()
    assert job.wait(120) == [0], job.output()[-3000:]
    output = job.output()
    assert secured["SCRAM_PASSWORD"] not in output + produced.stderr
    assert "sasl.password=***" in output

    got = {
        f"{d['model']}/count/{d['seq']}": {k: v for k, v in d.items() if k != "emitted_at"}
        for d in map(orjson.loads, out.read_bytes().splitlines())
    }
    reference = recompute(data, tmp_path, window_size=300, emit_every=100)
    assert periodic(got, 100) == periodic(reference, 100)

    # The dead letter went through the secured listener too: read it back the same way.
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "check",
            "enable.partition.eof": True,
            **dict(line.split("=", 1) for line in props.read_text().splitlines()),
        }
    )
    consumer.assign([TopicPartition(dlq, 0, 0)])
    letters = []
    while True:
        msg = consumer.poll(10)
        assert msg is not None, "no end of the dead-letter topic within 10 s"
        if msg.error() is not None:
            break
        letters.append(msg.value())
    consumer.close()
    assert letters == [BAD]


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("wrong-ca", "is not signed by a CA in ssl.ca.location"),
        ("wrong-password", "Check sasl.password (CONFUSION_KAFKA_OPT_SASL_PASSWORD"),
        ("expired", "has expired"),
    ],
)
def test_a_bad_secured_setting_stops_the_job_naming_it(
    secured: dict[str, str], topic: TopicFactory, tmp_path: Path, case: str, says: str
) -> None:
    bootstrap = secured["KAFKA_SASL_BOOTSTRAP"]
    wrong = "not-the-password-7e1f"
    if case == "wrong-ca":
        props = client_file(tmp_path, secured, ca="other-ca.pem")
    elif case == "wrong-password":
        props = client_file(tmp_path, secured, password=wrong)
    else:
        props = client_file(tmp_path, secured)
        bootstrap = secured["KAFKA_EXPIRED_BOOTSTRAP"]
    name = topic()
    env = job_env(
        source="kafka",
        kafka_bootstrap=bootstrap,
        kafka_config_file=props,
        kafka_topic=name,
        kafka_stop_at_end="true",
        output=tmp_path / "docs.jsonl",
    )
    job = Job(env, tmp_path / "job.log")
    job.start()
    assert job.wait(90) != [0]
    output = job.output()
    assert says in output, output[-3000:]
    assert secured["SCRAM_PASSWORD"] not in output and wrong not in output

    produced = produce_secured(
        bootstrap, props, name, write_lines(tmp_path / "d.jsonl", sample_lines()[:5])
    )
    assert produced.returncode == 2 and says in produced.stderr, produced.stderr
    assert secured["SCRAM_PASSWORD"] not in produced.stderr and wrong not in produced.stderr
