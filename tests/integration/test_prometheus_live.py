"""Live: a real Prometheus scrapes the running job and its drifting-model rule fires.

The demo stream (100,000 records, model2 drifting half way) is loaded into a fresh Kafka topic
and the job reads it with ``CONFUSION_METRICS_PORT`` set. The first half goes in first, and the
second half only once Prometheus has scraped the first (so it saw the alert counters at 0 before
the drift, as it would in a long-running job). A Kafka job never ends by itself, so its gauges
stay up for as long as the test polls; every wait is a bounded poll of Prometheus' HTTP API,
never a fixed sleep. The rules are k8s/prometheus/confusion-rules.yml with ``for:``
shortened (see prometheus_server.py).
"""

from __future__ import annotations

from pathlib import Path

from flows.demo import demo_lines
from tests.integration.pipeline import (
    Job,
    TopicFactory,
    free_port,
    job_env,
    produce,
    wait_for,
)
from tests.integration.prometheus_server import PrometheusServer

RECORDS = 100_000
TIMEOUT_S = 300.0


def active(prom: PrometheusServer, alertname: str, state: str) -> set[str]:
    return {
        a["labels"].get("model", "")
        for a in prom.alerts()
        if a["labels"]["alertname"] == alertname and a["state"] == state
    }


def test_the_drifting_model_rule_fires_in_a_real_prometheus(
    tmp_path: Path, kafka_bootstrap: str, topic: TopicFactory
) -> None:
    name = topic()
    produce(kafka_bootstrap, name, demo_lines(2026, RECORDS, 0, RECORDS // 2))
    port = free_port()
    env = job_env(
        SOURCE="kafka",
        KAFKA_BOOTSTRAP=kafka_bootstrap,
        KAFKA_TOPIC=name,
        OUTPUT=tmp_path / "confusion.jsonl",
        ALERTS_OUTPUT=tmp_path / "alerts.jsonl",
        METRICS_PORT=port,
        METRICS_ADDR="127.0.0.1",
        SUMMARY="false",
    )
    job = Job(env, tmp_path / "job.log")
    job.start()
    try:
        (tmp_path / "prometheus").mkdir()
        with PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{port}"]) as prom:

            def seen_first_half() -> bool:
                job.assert_alive()
                seqs = [
                    float(r["value"][1])
                    for r in prom.query(
                        'confusion_window_seq{model="model2"} and on (model) '
                        'confusion_alerts_total{model="model2",status="fired"} == 0'
                    )
                ]
                return bool(seqs) and seqs[0] >= RECORDS // 2 * 0.99

            wait_for("Prometheus to scrape the first half", seen_first_half, TIMEOUT_S, 0.5)
            assert prom.alerts() == []
            produce(kafka_bootstrap, name, demo_lines(2026, RECORDS, RECORDS // 2, RECORDS))

            def firing(alertname: str) -> bool:
                job.assert_alive()
                return "model2" in active(prom, alertname, "firing")

            wait_for(
                "ConfusionAccuracyLow firing for model2",
                lambda: firing("ConfusionAccuracyLow"),
                TIMEOUT_S,
                every=0.5,
            )
            wait_for(
                "ConfusionDriftDetected firing for model2",
                lambda: firing("ConfusionDriftDetected"),
                TIMEOUT_S,
                every=0.5,
            )

            def read_all() -> bool:
                job.assert_alive()
                seqs = {
                    r["metric"]["model"]: float(r["value"][1])
                    for r in prom.query("confusion_window_seq")
                }
                return len(seqs) == 3 and min(seqs.values()) >= RECORDS * 0.99

            wait_for("Prometheus to see the whole stream", read_all, TIMEOUT_S, every=0.5)
            # Over the whole run, no rule was ever pending or firing for the steady models.
            ever = prom.query('max_over_time(ALERTS{model=~"model1|model3"}[1h])')
            assert ever == [], ever
            drifted = prom.query('max_over_time(ALERTS{model="model2",alertstate="firing"}[1h])')
            assert {r["metric"]["alertname"] for r in drifted} >= {
                "ConfusionAccuracyLow",
                "ConfusionDriftDetected",
            }
            # The job's own alerts, as its counters tell: model2's only.
            fired = {
                r["metric"]["model"]: float(r["value"][1])
                for r in prom.query('sum by (model) (confusion_alerts_total{status="fired"})')
            }
            assert fired["model1"] == fired["model3"] == 0 and fired["model2"] >= 1, fired
    finally:
        job.kill9()
