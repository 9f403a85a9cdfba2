"""The job's log lines (timestamped text or JSON, librdkafka's repeats held back) and the outage
tracker's three kinds of line: unreachable once, still unreachable while it lasts, back once."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest

from flows.connectors import outage as outage_mod
from flows.connectors.outage import Outage
from flows.errors import ConfigError
from flows.logs import JsonFormatter, RepeatFilter, TextFormatter, utc_stamp
from flows.settings import load_settings


def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("confusion.kafka", level, __file__, 1, message, None, None)


def test_text_lines_start_with_a_utc_timestamp() -> None:
    line = TextFormatter().format(record("broker down"))
    assert re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING confusion-stream: confusion.kafka: "
        r"broker down$",
        line,
    ), line


def test_json_lines_are_one_object_each() -> None:
    entry = orjson.loads(JsonFormatter().format(record('a "quoted"\nline')))
    assert entry["level"] == "warning" and entry["logger"] == "confusion.kafka"
    assert entry["message"] == 'a "quoted"\nline'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"]), entry["ts"]


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert utc_stamp(1_796_200_000.9999) == "2026-12-02T08:26:40.999Z"
    assert utc_stamp(0.5) == "1970-01-01T00:00:00.500Z"


def test_a_bad_log_format_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CONFUSION_LOG_FORMAT"):
        load_settings({"CONFUSION_LOG_FORMAT": "xml"})
    assert load_settings({"CONFUSION_LOG_FORMAT": "json"}).log_format == "json"


def test_the_job_refuses_to_start_on_a_bad_log_format() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.confusion"],
        env={"CONFUSION_LOG_FORMAT": "yaml", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "CONFUSION_LOG_FORMAT" in done.stderr


def test_json_logs_from_the_job(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.confusion"],
        env={
            "CONFUSION_LOG_FORMAT": "json",
            "CONFUSION_DEMO_RECORDS": "300",
            "CONFUSION_OUTPUT": f"{tmp_path}/out.jsonl",
            "CONFUSION_DEAD_LETTER_PATH": f"{tmp_path}/dead.jsonl",
            "CONFUSION_ALERTS_OUTPUT": f"{tmp_path}/alerts.jsonl",
            "CONFUSION_MAX_MODELS": "1",  # the first refusal is logged
            "CONFUSION_SUMMARY": "false",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    logged = [orjson.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert logged and all({"ts", "level", "logger", "message"} <= e.keys() for e in logged)


def test_repeated_librdkafka_lines_are_held_back() -> None:
    keep = RepeatFilter(every=60)
    first = record("Connect to ipv4#127.0.0.1:9092 failed (after 0ms)")
    assert keep.filter(first)
    assert not keep.filter(record("Connect to ipv4#127.0.0.1:9092 failed (after 3ms)"))
    assert keep.filter(record("Disconnected"))
    keep.every = 0.0
    again = record("Connect to ipv4#127.0.0.1:9092 failed (after 1ms)")
    assert keep.filter(again)
    assert "(1 like it in the last" in again.getMessage()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(outage_mod, "STALL_S", 0.2)
    monkeypatch.setattr(outage_mod, "REPORT_EVERY_S", 0.3)
    monkeypatch.setattr(outage_mod, "TICK_S", 0.05)
    yield


def messages(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The lines of the tracker ``name`` (trackers of other tests may still be talking)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "confusion.health" and r.getMessage().startswith(f"{name} ")
    ]


def wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_unreachable_once_reports_while_down_and_back_once(
    quick: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "confusion")
    tracker = Outage("Thing", behind=lambda: "7 documents waiting")
    tracker.down("p0", "connection refused")
    tracker.down("p1", "connection refused")
    tracker.down("p0", "connection refused again")
    wait_until(lambda: any("still unreachable" in m for m in messages(caplog, "Thing")))
    tracker.up("p0")
    assert not any("reachable again" in m for m in messages(caplog, "Thing")), "p1 is down"
    tracker.up("p1")
    tracker.up("p1")
    got = messages(caplog, "Thing")
    assert [m for m in got if "unreachable:" in m] == ["Thing unreachable: connection refused"]
    assert all("7 documents waiting" in m for m in got if "still unreachable" in m)
    assert len([m for m in got if "reachable again" in m]) == 1
    assert tracker.outages == 1 and not tracker.is_down


def test_a_call_without_answer_is_an_outage_within_the_stall_time(
    quick: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "confusion")
    tracker = Outage("Frozen")
    tracker.busy("bulk", "bulk of 3 documents")
    wait_until(lambda: tracker.is_down)
    assert (
        messages(caplog, "Frozen")[0]
        == "Frozen unreachable: no answer for 0s to bulk of 3 documents"
    )
    tracker.idle("bulk")
    tracker.up("bulk")
    assert messages(caplog, "Frozen")[-1].startswith("Frozen reachable again after")


def test_an_answer_in_time_is_no_outage(quick: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "confusion")
    tracker = Outage("Fine")
    for _ in range(5):
        tracker.busy("bulk", "bulk")
        time.sleep(0.05)
        tracker.idle("bulk")
        tracker.up("bulk")
    time.sleep(0.3)
    assert messages(caplog, "Fine") == []
