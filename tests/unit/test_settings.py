"""Settings: the contract's defaults, and a ConfigError naming the variable for every bad value."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from flows.errors import ConfigError
from flows.settings import load_settings, warn_unknown


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert settings.source == "demo"
    assert settings.input is None
    assert settings.sink == "jsonl"
    assert settings.output == Path("out/confusion.jsonl")
    assert settings.window_size == 1000
    assert settings.emit_every == 100
    assert settings.weights == {}


def test_an_empty_value_means_the_default() -> None:
    assert (
        load_settings({"CONFUSION_WINDOW_SIZE": "", "CONFUSION_EMIT_EVERY": ""}).window_size == 1000
    )


def test_values_are_read_from_their_variables(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("")
    settings = load_settings(
        {
            "CONFUSION_SOURCE": "file",
            "CONFUSION_INPUT": str(source),
            "CONFUSION_SINK": "console",
            "CONFUSION_WINDOW_SIZE": "5",
            "CONFUSION_EMIT_EVERY": "1",
            "CONFUSION_OUTPUT": "x/y.jsonl",
            "CONFUSION_ENSEMBLE_WEIGHTS": "model1=0.5, model2=1",
        }
    )
    assert (settings.source, settings.input, settings.sink) == ("file", source, "console")
    assert (settings.window_size, settings.emit_every) == (5, 1)
    assert settings.output == Path("x/y.jsonl")
    assert settings.weights == {"model1": 0.5, "model2": 1.0}


BAD_VALUES = [
    ({"CONFUSION_SOURCE": "kafak"}, "CONFUSION_SOURCE"),
    ({"CONFUSION_SINK": "es"}, "CONFUSION_SINK"),
    ({"CONFUSION_WINDOW_SIZE": "0"}, "CONFUSION_WINDOW_SIZE"),
    ({"CONFUSION_WINDOW_SIZE": "-3"}, "CONFUSION_WINDOW_SIZE"),
    ({"CONFUSION_WINDOW_SIZE": "ten"}, "CONFUSION_WINDOW_SIZE"),
    ({"CONFUSION_WINDOW_SIZE": "2.5"}, "CONFUSION_WINDOW_SIZE"),
    ({"CONFUSION_EMIT_EVERY": "0"}, "CONFUSION_EMIT_EVERY"),
    ({"CONFUSION_EMIT_EVERY": "often"}, "CONFUSION_EMIT_EVERY"),
    ({"CONFUSION_BATCH_SIZE": "0"}, "CONFUSION_BATCH_SIZE"),
    ({"CONFUSION_DEMO_RECORDS": "0"}, "CONFUSION_DEMO_RECORDS"),
    ({"CONFUSION_PROGRESS": "loud"}, "CONFUSION_PROGRESS"),
    ({"CONFUSION_SUMMARY": "maybe"}, "CONFUSION_SUMMARY"),
    ({"CONFUSION_SOURCE": "file"}, "CONFUSION_INPUT"),
    ({"CONFUSION_SOURCE": "file", "CONFUSION_INPUT": "/nonexistent/in.jsonl"}, "CONFUSION_INPUT"),
    ({"CONFUSION_SOURCE": "kafka"}, "CONFUSION_KAFKA_BOOTSTRAP"),
    (
        {"CONFUSION_SOURCE": "kafka", "CONFUSION_KAFKA_BOOTSTRAP": "localhost:9092"},
        "CONFUSION_KAFKA_TOPIC",
    ),
    ({"CONFUSION_SINK": "elasticsearch"}, "CONFUSION_ES_URL"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "model1=abc"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "model1"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "model1=-1"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "model1=nan"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "model1=inf"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "model1=1,model1=2"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "model1=0,model2=0"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_ENSEMBLE_WEIGHTS": "=1"}, "CONFUSION_ENSEMBLE_WEIGHTS"),
    ({"CONFUSION_MAX_RECORD_BYTES": "10"}, "CONFUSION_MAX_RECORD_BYTES"),
    ({"CONFUSION_MAX_RECORD_BYTES": "1MB"}, "CONFUSION_MAX_RECORD_BYTES"),
    ({"CONFUSION_MAX_MODELS": "0"}, "CONFUSION_MAX_MODELS"),
    ({"CONFUSION_MAX_CLASSES": "1"}, "CONFUSION_MAX_CLASSES"),
    ({"CONFUSION_MAX_CLASSES": "1000000"}, "CONFUSION_MAX_CLASSES"),
    (
        {"CONFUSION_ENSEMBLE_WEIGHTS": "model1=1", "CONFUSION_ENSEMBLE_NAME": "model1"},
        "CONFUSION_ENSEMBLE_NAME",
    ),
]


@pytest.mark.parametrize(
    ("env", "variable"),
    BAD_VALUES,
    ids=[f"{'+'.join(sorted(e))}={'/'.join(e.values())}" for e, _ in BAD_VALUES],
)
def test_each_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert variable in str(caught.value)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"CONFUSION_WINDOW_SIZE": "0", "CONFUSION_SINK": "nowhere"})
    assert "CONFUSION_WINDOW_SIZE" in str(caught.value)
    assert "CONFUSION_SINK" in str(caught.value)


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    env = {
        "CONFUSION_SINK": "elasticsearch",
        "CONFUSION_ES_URL": "https://es:9200",
        "CONFUSION_ES_API_KEY": "s3cr3t-key",
        "CONFUSION_ES_USERNAME": "elastic",
        "CONFUSION_ES_PASSWORD": "hunter2-pw",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "s3cr3t-key" not in str(caught.value)
    assert "hunter2-pw" not in str(caught.value)
    del env["CONFUSION_ES_USERNAME"], env["CONFUSION_ES_PASSWORD"]
    settings = load_settings(env)
    assert "s3cr3t-key" not in repr(settings)
    assert "s3cr3t-key" not in str(settings.model_dump())


def test_a_misspelt_variable_is_named_with_a_suggestion() -> None:
    stream = io.StringIO()
    assert warn_unknown({"CONFUSION_WINDOW_SIZ": "5", "HOME": "/root"}, stream) == [
        "CONFUSION_WINDOW_SIZ"
    ]
    assert "CONFUSION_WINDOW_SIZE" in stream.getvalue()
