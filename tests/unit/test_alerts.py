"""Alert rules, documents and the per-model state machine (flows.output.alerts)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from flows.output.alerts import (
    AlertBook,
    AlertPolicy,
    Baseline,
    Rule,
    parse_rules,
    read_baselines,
    window_fill,
)


def NOW() -> str:
    return "t"


def doc(
    seq: int,
    accuracy: float | None,
    *,
    count: int = 100,
    size: int = 100,
    recall_a: float | None = 0.9,
) -> dict[str, Any]:
    return {
        "model": "m",
        "seq": seq,
        "window": {
            "kind": "count",
            "size": size,
            "count": count,
            "full": count >= size,
            "first_id": f"r{seq - count + 1}",
            "last_id": f"r{seq}",
            "start": "2026-11-22T10:00:00.000Z",
            "end": f"2026-11-22T10:{seq % 60:02d}:00.000Z",
        },
        "metrics": {
            "accuracy": accuracy,
            "macro_f1": accuracy,
            "mcc": None,
            "per_class": {"A": {"recall": recall_a, "precision": 0.5}},
        },
    }


def test_rules_parse_to_canonical_names() -> None:
    rules = parse_rules(" accuracy < 0.8; macro_f1 drop > 0.1, recall[A] drop>20% ;mcc>0.99")
    assert [r.name for r in rules] == [
        "accuracy<0.8",
        "macro_f1-drop>0.1",
        "recall[A]-drop>20%",
        "mcc>0.99",
    ]
    assert rules[2] == Rule("recall", "drop", 0.2, "A", relative=True)
    assert parse_rules("none") == () and parse_rules("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accuracy = 0.8", "cannot read rule"),
        ("accuracyy<0.8", "unknown metric 'accuracyy'"),
        ("support[A]<3", "unknown per-class metric"),
        ("accuracy<80%", "% is for drop/rise"),
        ("accuracy drop>0", "amount > 0"),
        ("accuracy drop>nan", "cannot read rule"),
        ("accuracy drop>1e999", "amount > 0"),
        ("accuracy<0.8;accuracy < 0.8", "given twice"),
        ("accuracy<1e", "not a number"),
    ],
)
def test_bad_rules_are_refused_with_the_part_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules(text)


def test_drop_rule_limits_absolute_and_relative() -> None:
    absolute, relative = parse_rules("accuracy drop>0.1; accuracy drop>10%")
    assert absolute.limit(0.9) == pytest.approx(0.8)
    assert relative.limit(0.9) == pytest.approx(0.81)
    assert absolute.breached(0.79, 0.9) and not absolute.breached(0.81, 0.9)
    assert absolute.breached(0.5, None) is None
    (rise,) = parse_rules("accuracy rise>0.1")
    assert rise.breached(0.95, 0.8) and not rise.breached(0.85, 0.8)


def test_floor_fires_once_then_resolves_with_the_same_alert_id() -> None:
    book = AlertBook(AlertPolicy(parse_rules("accuracy<0.8")))
    assert book.on_document(doc(100, 0.9), NOW) == []
    fired = book.on_document(doc(200, 0.7), NOW)
    assert [a["status"] for a in fired] == ["fired"]
    assert fired[0]["id"] == "m/accuracy<0.8/200/fired"
    assert fired[0]["alert_id"] == "m/accuracy<0.8/200"
    assert (fired[0]["value"], fired[0]["threshold"], fired[0]["limit"]) == (0.7, 0.8, 0.8)
    assert fired[0]["window"]["last_id"] == "r200" and fired[0]["fired_seq"] == 200
    assert fired[0]["emitted_at"] == "t"
    assert book.on_document(doc(300, 0.6), NOW) == []  # still open: no second document
    resolved = book.on_document(doc(400, 0.85), NOW)
    assert [(a["status"], a["id"], a["seq"], a["fired_seq"]) for a in resolved] == [
        ("resolved", "m/accuracy<0.8/200/resolved", 400, 200)
    ]
    assert resolved[0]["fired_at"] == fired[0]["at"]


def test_nothing_fires_before_the_minimum_fill_and_undefined_values_are_skipped() -> None:
    book = AlertBook(AlertPolicy(parse_rules("accuracy<0.8; mcc<0.5"), min_fill=0.5))
    assert book.on_document(doc(40, 0.1, count=40), NOW) == []
    fired = book.on_document(doc(60, 0.1, count=60), NOW)
    assert [a["name"] for a in fired] == ["accuracy<0.8"]  # mcc is None: not judged
    assert book.on_document(doc(80, None, count=80), NOW) == []  # undefined: stays open
    assert "accuracy<0.8" in book.open


def test_drop_rule_compares_with_the_first_full_window() -> None:
    book = AlertBook(AlertPolicy(parse_rules("accuracy drop>0.1"), min_fill=0.5))
    assert book.on_document(doc(60, 0.5, count=60), NOW) == []  # not full: no baseline
    assert book.on_document(doc(100, 0.9), NOW) == []  # the baseline
    assert book.baseline is not None and book.baseline.seq == 100
    assert book.on_document(doc(200, 0.85), NOW) == []
    (fired,) = book.on_document(doc(300, 0.75), NOW)
    assert (fired["baseline"], fired["baseline_seq"], fired["baseline_source"]) == (
        0.9,
        100,
        "first_full_window",
    )
    assert fired["limit"] == pytest.approx(0.8)


def test_pinned_baseline_wins_over_the_first_window() -> None:
    pinned = read_baselines({"v": 1, "models": {"m": {"seq": 7, "metrics": {"accuracy": 0.99}}}})
    book = AlertBook(AlertPolicy(parse_rules("accuracy drop>0.05"), pinned=pinned))
    (fired,) = book.on_document(doc(100, 0.9), NOW)
    assert (fired["baseline"], fired["baseline_seq"], fired["baseline_source"]) == (
        0.99,
        7,
        "pinned",
    )


@pytest.mark.parametrize(
    "data", [{"v": 2, "models": {}}, {"v": 1}, {"v": 1, "models": {"m": {"seq": 1}}}]
)
def test_bad_baseline_files_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        read_baselines(data)


def test_a_removed_rule_resolves_its_open_alert() -> None:
    book = AlertBook(AlertPolicy(parse_rules("accuracy<0.8")))
    book.on_document(doc(100, 0.5), NOW)
    state = pickle.loads(pickle.dumps(book.snapshot()))
    later = AlertBook(AlertPolicy(parse_rules("macro_f1<0.1")), resume=state)
    (resolved,) = later.on_document(doc(200, 0.5), NOW)
    assert resolved["status"] == "resolved" and resolved["reason"] == "rule no longer configured"
    assert resolved["alert_id"] == "m/accuracy<0.8/100"


def test_detector_changes_fire_on_degradation_and_resolve_on_recovery() -> None:
    book = AlertBook(AlertPolicy(detector={"name": "adwin", "delta": 0.002, "clock": 32}), "m")
    window = doc(500, 0.9)["window"]
    assert (
        book.on_change("adwin:correctness", "correctness", False, 0.5, 0.9, 64, 400, window, "t")
        == []
    )  # a rise with nothing open: no document
    (fired,) = book.on_change(
        "adwin:correctness", "correctness", True, 0.9, 0.7, 64, 500, window, "t"
    )
    assert fired["id"] == "m/adwin:correctness/500/fired" and fired["source"] == "detector"
    assert (fired["value"], fired["baseline"], fired["emitted_at"]) == (0.7, 0.9, "t")
    assert fired["detector"] == {"name": "adwin", "delta": 0.002, "clock": 32, "records": 64}
    assert (
        book.on_change("adwin:correctness", "correctness", True, 0.7, 0.6, 64, 600, window, "t")
        == []
    )  # already open
    (resolved,) = book.on_change(
        "adwin:correctness", "correctness", False, 0.6, 0.9, 64, 900, window, "t"
    )
    assert resolved["id"] == "m/adwin:correctness/500/resolved"


def test_a_resumed_book_emits_exactly_what_an_uninterrupted_one_does() -> None:
    policy = AlertPolicy(parse_rules("accuracy<0.8; accuracy drop>0.1"))
    stream = [
        doc(100 * k, acc)
        for k, acc in enumerate([0.95, 0.9, 0.7, 0.72, 0.9, 0.6, 0.95, 0.82], start=1)
    ]
    whole = AlertBook(policy)
    expected = [a for d in stream for a in whole.on_document(d, NOW)]
    first = AlertBook(policy)
    got = [a for d in stream[:3] for a in first.on_document(d, NOW)]
    resumed = AlertBook(policy, resume=pickle.loads(pickle.dumps(first.snapshot())))
    got += [a for d in stream[3:] for a in resumed.on_document(d, NOW)]
    assert got == expected
    assert [a["id"] for a in expected] == [
        "m/accuracy<0.8/300/fired",
        "m/accuracy-drop>0.1/300/fired",
        "m/accuracy<0.8/300/resolved",
        "m/accuracy-drop>0.1/300/resolved",
        "m/accuracy<0.8/600/fired",
        "m/accuracy-drop>0.1/600/fired",
        "m/accuracy<0.8/600/resolved",
        "m/accuracy-drop>0.1/600/resolved",
        "m/accuracy-drop>0.1/800/fired",
    ]  # 0.95 - 0.82 > 0.1, though above the floor


def test_window_fill_of_count_and_time_windows() -> None:
    assert window_fill({"kind": "count", "size": 200, "count": 50}) == 0.25
    assert window_fill({"kind": "count", "size": 200, "count": 200, "full": True}) == 1.0
    assert (
        window_fill(
            {
                "kind": "time",
                "size": 60_000,
                "count": 9,
                "full": False,
                "start": "2026-11-22T10:00:00.000Z",
                "end": "2026-11-22T10:00:15.000Z",
            }
        )
        == 0.25
    )


def test_baseline_round_trips_through_json() -> None:
    base = Baseline({"accuracy": 0.9}, 5, "pinned")
    assert Baseline.from_json(base.to_json()) == base
