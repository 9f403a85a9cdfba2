"""The delayed-labels variables: when the join is on, and bad values stop the job at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.errors import ConfigError
from flows.settings import load_settings


def settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({f"CONFUSION_{k.upper()}": v for k, v in env.items()})


def test_the_join_is_off_by_default_and_on_with_a_ttl_or_a_labels_source(tmp_path: Path) -> None:
    assert not settings().join
    on = settings(label_ttl="12h")
    assert on.join and on.label_ttl_ms == 12 * 3_600_000
    assert settings(label_ttl="30m").label_ttl_ms == 1_800_000
    assert settings(label_ttl="45s").label_ttl_ms == 45_000
    path = tmp_path / "x.jsonl"
    path.write_text("")
    files = settings(source="file", input=str(path), labels_input=str(path))
    assert files.join and files.label_ttl_ms == 7 * 86_400_000
    kafka = settings(source="kafka", kafka_bootstrap="h:1", kafka_topic="p", labels_topic="l")
    assert kafka.join and kafka.kafka_topics == ["p", "l"]
    demo = settings(demo_labels="delayed")
    assert demo.join and demo.label_ttl_ms == 1_800_000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"label_ttl": "seven days"}, "CONFUSION_LABEL_TTL"),
        ({"label_ttl": "0s"}, "CONFUSION_LABEL_TTL"),
        ({"join_shards": "0"}, "CONFUSION_JOIN_SHARDS"),
        ({"demo_labels": "late"}, "CONFUSION_DEMO_LABELS"),
        ({"labels_input": "/nonexistent.jsonl"}, "CONFUSION_LABELS_INPUT"),
        ({"labels_topic": "l"}, "CONFUSION_LABELS_TOPIC"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        settings(**env)
