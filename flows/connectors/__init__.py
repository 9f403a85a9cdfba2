"""Sources and sinks, chosen by settings. Connectors move bytes and documents, never math."""

from __future__ import annotations

import json
from typing import Any

from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.connectors.files import JsonLinesSink, JsonLinesSource, encode_json
from flows.records import DeadLetter, RawBatch
from flows.settings import Settings
from flows.telemetry import Heartbeat


def make_source(settings: Settings, heartbeat: Heartbeat) -> Source[RawBatch]:
    """The source of raw batches named by ``CONFUSION_SOURCE``."""
    if settings.source == "file":
        assert settings.input is not None
        return JsonLinesSource(settings.input, settings.batch_size, heartbeat,
                               settings.max_record_bytes)
    if settings.source == "kafka":
        from flows.connectors.kafka import kafka_source
        return kafka_source(settings, heartbeat)
    from flows.connectors.demo import DemoSource
    return DemoSource(settings.demo_seed, settings.demo_records, settings.batch_size, heartbeat)


def make_document_sink(settings: Settings) -> Sink[tuple[str, dict[str, Any]]]:
    """The sink of ``(model, document)`` items named by ``CONFUSION_SINK``."""
    if settings.sink == "console":
        from flows.connectors.console import ConsoleSink
        return ConsoleSink()
    if settings.sink == "elasticsearch":
        from flows.connectors.elasticsearch import ElasticsearchSink
        return ElasticsearchSink.from_settings(settings)
    return JsonLinesSink(settings.output)


def _encode_dead_letter(letter: DeadLetter) -> bytes:
    doc = letter.to_json()
    try:
        return encode_json(doc)
    except TypeError:  # a model name with an unpaired surrogate: keep it, as a JSON \u escape
        return json.dumps(doc, ensure_ascii=True).encode() + b"\n"


def make_dead_letter_sink(settings: Settings) -> Sink[tuple[str, DeadLetter]]:
    """Dead letters go back to Kafka when records come from Kafka, else to a JSON-lines file."""
    if settings.source == "kafka":
        from flows.connectors.kafka import DeadLetterTopicSink
        return DeadLetterTopicSink.from_settings(settings)
    return JsonLinesSink(settings.dead_letter_path, _encode_dead_letter)
