"""The Prometheus rules in k8s/prometheus/, checked by the real promtool.

scripts/test installs Debian's prometheus package (which ships promtool); without it these tests
fail rather than skip, as the project's rule is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "k8s" / "prometheus"
RULES = RULES_DIR / "confusion-rules.yml"
TESTS = RULES_DIR / "confusion-rules.test.yml"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/test installs Debian's prometheus package"
    return path


def run(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_are_valid() -> None:
    result = run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("confusion_window_accuracy < 0.8", "confusion_window_accuracy < 0.5"),
        ("and on (model) confusion_window_fill >= 1", "and on (model) confusion_window_fill >= 0"),
        ('status="fired"', 'status="resolved"'),
        ("> 0.1 * increase(confusion_join_seen", "> 1.1 * increase(confusion_join_seen"),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    """The promtool tests are not vacuous: each of these edits makes them fail."""
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new, 1))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = run("test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, result.stdout


def test_the_prometheusrule_object_holds_the_same_rules() -> None:
    obj = yaml.safe_load((RULES_DIR / "prometheusrule.yml").read_text())
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["namespace"] == "confusion-stream"
    assert obj["spec"] == yaml.safe_load(RULES.read_text())


def test_the_podmonitor_scrapes_the_dataflow_pods_metrics_port() -> None:
    monitor = yaml.safe_load((RULES_DIR / "podmonitor.yml").read_text())
    statefulset = yaml.safe_load((RULES_DIR.parent / "base" / "statefulset.yaml").read_text())
    pod = statefulset["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["namespace"] == statefulset["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
