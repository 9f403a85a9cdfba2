"""Alerts inside one model's stateful logic: order, batch independence, snapshots."""

from __future__ import annotations

import pickle
from functools import cache
from typing import Any

import pytest

from flows.demo import demo_lines
from flows.parsing.batches import ModelColumns, RawBatch, parse_batch
from flows.settings import load_settings
from flows.windows.count import CountPolicy
from flows.windows.model_state import Alert, Alerting, ModelWindowLogic

RECORDS = 20_000  # the demo drifts model2 at record 10,000
T0 = 1_795_341_600_000


@cache
def lines() -> list[bytes]:
    return demo_lines(2026, RECORDS)


def columns(model: str, cuts: tuple[int, ...]) -> list[ModelColumns]:
    out, start, turn = [], 0, 0
    while start < RECORDS:
        stop = min(RECORDS, start + cuts[turn % len(cuts)])
        parsed = parse_batch(
            RawBatch(lines()[start:stop], [0] * (stop - start), "o", list(range(start, stop)))
        )
        if model in parsed.by_model:
            out.append(parsed.by_model[model])
        start, turn = stop, turn + 1
    return out


def alerting(**env: str) -> Alerting:
    settings = load_settings({f"CONFUSION_{k.upper()}": v for k, v in env.items()})
    return Alerting(settings.drift_config(), settings.alert_policy())


def run(
    model: str, cuts: tuple[int, ...], resume_at: int | None = None, watch: Alerting | None = None
) -> list[Any]:
    policy = CountPolicy(1000)
    watch = watch or alerting()
    logic = ModelWindowLogic(policy, 100, None, clock=lambda: T0, alerting=watch)
    out: list[Any] = []
    for k, batch in enumerate(columns(model, cuts)):
        out.extend(logic.on_batch([batch])[0])
        if k == resume_at:
            state = pickle.loads(pickle.dumps(logic.snapshot()))
            logic = ModelWindowLogic(policy, 100, state, clock=lambda: T0, alerting=watch)
    out.extend(logic.on_eof()[0])
    return out


def alerts(out: list[Any]) -> list[dict[str, Any]]:
    return [item.doc for item in out if isinstance(item, Alert)]


def test_the_drifting_model_fires_a_detector_and_a_rule_alert() -> None:
    found = alerts(run("model2", (1000,)))
    assert [(a["source"], a["name"], a["status"]) for a in found] == [
        ("detector", "adwin:correctness", "fired"),
        ("detector", "adwin:true_class_score", "fired"),
        ("rule", "accuracy-drop>0.1", "fired"),
    ]
    detector, score, rule = found
    assert 10_000 < detector["fired_seq"] < rule["fired_seq"] < 11_000
    assert detector["value"] < detector["baseline"]
    # model2 sends score maps: the score it gives the true class drops with its accuracy.
    assert 10_000 < score["fired_seq"] < 11_000
    assert score["value"] < score["baseline"]
    # The alert's window ends at the record where it fired.
    ids = [i for batch in columns("model2", (1000,)) for i in batch.ids]
    assert detector["window"]["last_id"] == ids[detector["fired_seq"] - 1]
    assert detector["window"]["first_id"] == ids[detector["fired_seq"] - 1000]
    assert rule["fired_seq"] % 100 == 0 and rule["baseline_seq"] == 1000


@pytest.mark.parametrize("model", ["model1", "model3"])
def test_the_steady_models_raise_nothing(model: str) -> None:
    assert alerts(run(model, (1000,))) == []


def test_output_does_not_depend_on_batch_boundaries() -> None:
    assert run("model2", (1000,)) == run("model2", (7, 333, 1500, 1))


@pytest.mark.parametrize("resume_at", [0, 9, 10, 11, 15])
def test_a_resumed_logic_emits_exactly_the_uninterrupted_output(resume_at: int) -> None:
    assert run("model2", (1000,), resume_at) == run("model2", (1000,))


def test_alerting_off_emits_documents_only() -> None:
    out = run("model2", (1000,), watch=alerting(drift_detector="off", alert_rules="none"))
    assert alerts(out) == [] and len(out) == RECORDS // 100
