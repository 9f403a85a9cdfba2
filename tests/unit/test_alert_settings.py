"""Alerting settings (flows.alert_settings) and the baseline tool (flows.tools.baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from flows.alert_settings import AlertSettings, load_baseline_file
from flows.tools import baseline


def test_defaults_build_a_policy_with_the_default_rule_and_adwin() -> None:
    settings = AlertSettings()
    policy = settings.alert_policy()
    assert [r.name for r in policy.rules] == ["accuracy-drop>0.1"]
    assert policy.min_fill == 1.0 and policy.pinned == {}
    assert policy.detector == {"name": "adwin", "delta": 0.002, "clock": 32}
    assert AlertSettings(drift_detector="off").alert_policy().detector == {}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"alert_rules": "accuracy<<0.8"}, "alert_rules"),
        ({"alert_min_fill": "0"}, "alert_min_fill"),
        ({"alert_min_fill": "1.5"}, "alert_min_fill"),
        ({"drift_delta": "1"}, "drift_delta"),
        ({"drift_detector": "ddm"}, "drift_detector"),
        ({"metrics_port": "70000"}, "metrics_port"),
        ({"metrics_max_classes": "0"}, "metrics_max_classes"),
        ({"alert_baseline_file": "/nonexistent/baseline.json"}, "alert_baseline_file"),
    ],
)
def test_bad_values_name_their_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertSettings.model_validate(values)
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_an_alerts_topic_needs_kafka() -> None:
    with pytest.raises(ValidationError, match="CONFUSION_ALERTS_TOPIC needs"):
        AlertSettings(alerts_topic="alerts")


def docs() -> list[dict[str, Any]]:
    out = []
    for seq, full, end, acc in [
        (100, False, "10:00", 0.5),
        (200, True, "10:01", 0.91),
        (300, True, "10:02", 0.93),
        (400, True, "10:03", 0.7),
    ]:
        out.append(
            {
                "model": "m1",
                "seq": seq,
                "window": {"full": full, "end": f"2026-11-22T{end}:00.000Z"},
                "metrics": {"accuracy": acc, "macro_f1": acc, "per_class": {}},
            }
        )
    out.append(
        {
            "model": "m2",
            "seq": 100,
            "window": {"full": False, "end": "x"},
            "metrics": {"accuracy": 0.1},
        }
    )
    return out


def test_choose_takes_the_last_full_window_or_the_one_asked_for() -> None:
    assert {m: d["seq"] for m, d in baseline.choose(docs()).items()} == {"m1": 400}
    assert baseline.choose(docs(), at="2026-11-22T10:02:30Z")["m1"]["seq"] == 300
    assert baseline.choose(docs(), seq=200)["m1"]["seq"] == 200
    assert baseline.choose(docs(), models={"m2"}) == {}


def test_the_tool_writes_a_file_the_job_reads(tmp_path: Path) -> None:
    source, out = tmp_path / "docs.jsonl", tmp_path / "pinned" / "baseline.json"
    source.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs()))
    assert (
        baseline.main(["--from", str(source), "--out", str(out), "--at", "2026-11-22T10:02:00Z"])
        == 0
    )
    pinned = load_baseline_file(out)
    assert pinned["m1"].metrics["accuracy"] == 0.93 and pinned["m1"].seq == 300
    assert pinned["m1"].source == "pinned"
    assert AlertSettings(alert_baseline_file=out).alert_policy().pinned == pinned
    assert baseline.main(["--from", str(source), "--out", str(out), "--model", "m2"]) == 1


def test_a_file_that_is_not_a_baseline_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        load_baseline_file(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_baseline_file(bad)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONFUSION_ALERT_RULES", "accuracy <= 0.8"),
        ("CONFUSION_ALERT_MIN_FILL", "0"),
        ("CONFUSION_ALERT_BASELINE_FILE", "/nonexistent/baseline.json"),
        ("CONFUSION_DRIFT_DETECTOR", "kswin"),
        ("CONFUSION_DRIFT_CLOCK", "0"),
        ("CONFUSION_METRICS_PORT", "http"),
        ("CONFUSION_METRICS_MAX_MODELS", "-1"),
    ],
)
def test_the_job_refuses_to_start_naming_the_variable(name: str, value: str) -> None:
    from flows.errors import ConfigError
    from flows.settings import load_settings

    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_a_port_in_use_stops_the_job_with_exit_2(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin",
            "CONFUSION_METRICS_PORT": str(port),
            "CONFUSION_METRICS_ADDR": "127.0.0.1",
            "CONFUSION_DEMO_RECORDS": "10",
            "CONFUSION_OUTPUT": str(tmp_path / "c.jsonl"),
            "CONFUSION_ALERTS_OUTPUT": str(tmp_path / "a.jsonl"),
            "CONFUSION_DEAD_LETTER_PATH": str(tmp_path / "d.jsonl"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "bytewax.run", "flows.confusion"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "CONFUSION_METRICS_PORT" in done.stderr
    assert not (tmp_path / "c.jsonl").exists()
