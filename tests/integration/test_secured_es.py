"""Elasticsearch over TLS with credentials, end to end on loopback.

The embedded node has no security plugin, so Debian's haproxy (scripts/install-haproxy) stands in
front of it as a TLS-terminating proxy with basic authentication, as a load balancer would; this
test starts its own haproxy on free ports (certificates by scripts/certs: a good one, an expired
one). A wrong CA, a wrong password and an expired certificate each stop the job with a message
naming the setting, and no secret reaches the output."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from tests.integration.pipeline import (
    REPO,
    IndexNameFactory,
    Job,
    count,
    free_port,
    job_env,
    sample_lines,
    write_lines,
)

USER, PASSWORD = "confusion", "es-pass-4b9e"  # test credentials of the proxy only


@pytest.fixture(scope="module")
def tls_es(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is missing: scripts/install-haproxy installs Debian's package"
    tmp = tmp_path_factory.mktemp("tls-es")
    certs = tmp / "certs"
    subprocess.run([str(REPO / "scripts" / "certs"), str(certs)], check=True, timeout=60)
    good, expired = free_port(), free_port()
    upstream = es_url.removeprefix("http://").rstrip("/")
    config = tmp / "haproxy.cfg"
    config.write_text(
        f"""global
    log stderr format raw local0 warning
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
userlist users
    user {USER} insecure-password {PASSWORD}
frontend good
    bind 127.0.0.1:{good} ssl crt {certs}/server-bundle.pem
    http-request auth realm elasticsearch unless {{ http_auth(users) }}
    http-request del-header Authorization
    default_backend es
frontend expired
    bind 127.0.0.1:{expired} ssl crt {certs}/expired-bundle.pem
    http-request auth realm elasticsearch unless {{ http_auth(users) }}
    http-request del-header Authorization
    default_backend es
backend es
    server es1 {upstream}
"""
    )
    proc = subprocess.Popen(
        [haproxy, "-f", str(config), "-db"],
        stdout=(tmp / "haproxy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", good), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "haproxy did not listen within 20 s"
            time.sleep(0.1)
    yield {
        "url": f"https://127.0.0.1:{good}",
        "expired_url": f"https://127.0.0.1:{expired}",
        "ca": str(certs / "ca.pem"),
        "other_ca": str(certs / "other-ca.pem"),
    }
    proc.terminate()
    proc.wait(10)


def es_job(tmp: Path, url: str, index: str, *, ca: str, password: str) -> Job:
    data = write_lines(tmp / "data.jsonl", sample_lines()[:1000])
    env = job_env(
        source="file",
        input=data,
        sink="elasticsearch",
        es_url=url,
        es_index=index,
        es_username=USER,
        es_password=password,
        es_ca_certs=ca,
        window_size=200,
        emit_every=100,
        dead_letter_path=tmp / "dead.jsonl",
        alerts_output=tmp / "alerts.jsonl",
    )
    return Job(env, tmp / "job.log")


def test_the_sink_over_tls_with_credentials(
    tls_es: dict[str, str], es_client: Elasticsearch, es_index: IndexNameFactory, tmp_path: Path
) -> None:
    index = es_index()
    job = es_job(tmp_path, tls_es["url"], index, ca=tls_es["ca"], password=PASSWORD)
    job.start()
    assert job.wait(120) == [0], job.output()[-3000:]
    assert count(es_client, index) == 3 * 1000 // 100  # 3 models, every 100 records
    output = job.output()
    assert PASSWORD not in output and f"auth {USER}" in output


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("wrong-ca", "is not signed by a CA in CONFUSION_ES_CA_CERTS="),
        ("wrong-password", "CONFUSION_ES_USERNAME/CONFUSION_ES_PASSWORD"),
        ("expired", "certificate of Elasticsearch has expired"),
    ],
)
def test_a_bad_tls_or_credential_setting_names_it(
    tls_es: dict[str, str], es_index: IndexNameFactory, tmp_path: Path, case: str, says: str
) -> None:
    url, ca, password = tls_es["url"], tls_es["ca"], PASSWORD
    if case == "wrong-ca":
        ca = tls_es["other_ca"]
    elif case == "wrong-password":
        password = "not-it-51ac"
    else:
        url = tls_es["expired_url"]
    job = es_job(tmp_path, url, es_index(), ca=ca, password=password)
    job.start()
    assert job.wait(120) != [0]
    output = job.output()
    assert says in output, output[-3000:]
    assert password not in output and PASSWORD not in output
