"""Sources and sinks, chosen by settings. Connectors move bytes and documents, never math.

One module (or package) per system: ``files`` (JSON lines), ``console`` (stdout and the summary
table), ``demo``, ``kafka/``, ``elasticsearch/``; ``retry`` is the one retry policy they share. A
new sink is a module here plus one branch in `make_document_sink`. Connector modules are imported
where chosen, so a job (or a tool) pays only for the clients it uses.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the standard library at import time (see above)
    from bytewax.inputs import Source
    from bytewax.outputs import Sink

    from flows.output.documents import Document
    from flows.parsing.batches import DeadLetter, RawBatch
    from flows.settings import Settings
    from flows.telemetry import Heartbeat


def make_source(settings: Settings, heartbeat: Heartbeat) -> Source[RawBatch]:
    """The source of raw batches named by ``CONFUSION_SOURCE``."""
    if settings.source == "file":
        from flows.connectors.files import JsonLinesSource

        assert settings.input is not None
        more = () if settings.labels_input is None else (settings.labels_input,)
        return JsonLinesSource(
            settings.input, settings.batch_size, heartbeat, settings.max_record_bytes, more
        )
    if settings.source == "kafka":
        from flows.connectors.kafka.source import kafka_source

        return kafka_source(settings, heartbeat)
    if settings.source == "elasticsearch":
        from flows.connectors.elasticsearch.source import elasticsearch_source

        return elasticsearch_source(settings, heartbeat)
    from flows.connectors.demo import DemoSource

    return DemoSource(
        settings.demo_seed,
        settings.demo_records,
        settings.batch_size,
        heartbeat,
        delayed=settings.demo_labels == "delayed",
    )


def make_document_sink(settings: Settings) -> Sink[tuple[str, Document]]:
    """The sink of ``(model, document)`` items named by ``CONFUSION_SINK``."""
    if settings.sink == "console":
        from flows.connectors.console import ConsoleSink

        return ConsoleSink()
    if settings.sink == "elasticsearch":
        from flows.connectors.elasticsearch.sink import ElasticsearchSink

        return ElasticsearchSink.from_settings(settings)
    from flows.connectors.files import JsonLinesSink

    return JsonLinesSink(settings.output)


def make_alert_sinks(settings: Settings) -> list[Sink[tuple[str, dict[str, Any]]]]:
    """Where alert documents go: beside the documents (``<index>-alerts`` for Elasticsearch,
    ``CONFUSION_ALERTS_OUTPUT`` for jsonl, stdout for console), plus ``CONFUSION_ALERTS_TOPIC``."""
    sinks: list[Sink[tuple[str, dict[str, Any]]]] = []
    if settings.sink == "console":
        from flows.connectors.console import ConsoleSink

        sinks.append(ConsoleSink())
    elif settings.sink == "elasticsearch":
        from flows.connectors.elasticsearch.alerts import ElasticsearchAlertsSink

        sinks.append(ElasticsearchAlertsSink.from_settings(settings))
    else:
        from flows.connectors.files import JsonLinesSink

        sinks.append(JsonLinesSink(settings.alerts_output))
    if settings.alerts_topic:
        from flows.connectors.kafka.alerts import AlertTopicSink

        sinks.append(AlertTopicSink.from_settings(settings))
    return sinks


def _encode_dead_letter(letter: DeadLetter) -> bytes:
    from flows.connectors.files import encode_json

    doc = letter.to_json()
    try:
        return encode_json(doc)
    except TypeError:  # a model name with an unpaired surrogate: keep it, as a JSON \u escape
        return json.dumps(doc, ensure_ascii=True).encode() + b"\n"


def make_dead_letter_sink(settings: Settings) -> Sink[tuple[str, DeadLetter]]:
    """Dead letters go back to Kafka when records come from Kafka, to ``CONFUSION_DLQ_INDEX``
    when set (Elasticsearch source), else to a JSON-lines file."""
    if settings.source == "kafka":
        from flows.connectors.kafka.dead_letters import DeadLetterTopicSink

        return DeadLetterTopicSink.from_settings(settings)
    if settings.dlq_index is not None:
        from flows.connectors.elasticsearch.dead_letters import DeadLetterIndexSink

        return DeadLetterIndexSink.from_settings(settings)
    from flows.connectors.files import JsonLinesSink

    return JsonLinesSink(settings.dead_letter_path, _encode_dead_letter)
