"""The dataflow: parse -> key by model -> update window state -> document -> sinks.

Run it with ``python -m bytewax.run flows.confusion``; every setting comes from ``CONFUSION_*``
environment variables (see README). ``flow`` is built from the environment when ``bytewax.run``
asks for it, so importing this module builds nothing; a configuration error then stops the job
before Bytewax starts (exit 2), with a message naming the variable to fix. Tests, benchmarks and
other entry points call `build_flow` with their own source and sinks instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.connectors import (
    make_alert_sinks,
    make_dead_letter_sink,
    make_document_sink,
    make_source,
)
from flows.connectors.console import SummaryTableSink
from flows.errors import ConfigError
from flows.limits import Limits
from flows.logs import set_format
from flows.output.documents import Document
from flows.output.gauges import WindowGauges
from flows.output.summary import Tally
from flows.parsing.batches import DeadLetter, ModelColumns, ParsedBatch, RawBatch, parse_batch
from flows.parsing.ensemble import Ensemble
from flows.parsing.halves import Halves
from flows.recovery_store import (
    RecoveryStoreError,
    backup_interval_from,
    check_recovery_store,
    recovery_dir_from,
)
from flows.settings import Settings, load_settings
from flows.telemetry import Progress, heartbeat_from_env, job_logger, serve_metrics
from flows.windows import window_policy
from flows.windows.join_order import JoinOrderLogic, JoinPart, reading_worker
from flows.windows.join_state import JoinLogic, JoinOut, segment_logs
from flows.windows.join_store import JoinCounts
from flows.windows.model_state import Alert, Alerting, Doc, Emitted, ModelWindowLogic

_GAUGES: WindowGauges | None = None
alert_log = job_logger("alert")


def window_gauges(settings: Settings) -> WindowGauges:
    """The process's gauges (prometheus_client registers a name once per process)."""
    global _GAUGES
    if _GAUGES is None:
        _GAUGES = WindowGauges(settings.metrics_max_models, settings.metrics_max_classes)
    return _GAUGES


def _short(value: float | None) -> str:
    return "null" if value is None else f"{value:.3f}"


@dataclass(frozen=True, slots=True)
class Sinks:
    """Where each output stream of the flow goes: one field per stream.

    Items are ``(model, document)``, ``(origin, dead letter)`` and ``(model, alert)``; every
    sink in ``alerts`` gets every alert. A new output stream is a new field here and one
    ``op.output`` in `build_flow`.
    """

    documents: Sink[tuple[str, Document]]
    dead_letters: Sink[tuple[str, DeadLetter]]
    alerts: Sequence[Sink[tuple[str, Doc]]] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Sinks:
        """The sinks ``CONFUSION_SINK``, the source kind and ``CONFUSION_ALERTS_TOPIC`` name."""
        return cls(
            make_document_sink(settings),
            make_dead_letter_sink(settings),
            make_alert_sinks(settings),
        )


def build_flow(
    settings: Settings,
    *,
    source: Source[RawBatch] | None = None,
    sinks: Sinks | None = None,
    recovery_dir: Path | Literal["off"] | None = None,
    backup_interval_s: float = 0.0,
) -> Dataflow:
    """Wire the job for ``settings``; ``source`` and ``sinks`` default to those it names.

    ``recovery_dir`` is the Bytewax recovery directory the job runs with: the join keeps its
    snapshot segments beside it; ``"off"`` says the job runs without recovery (the join then
    makes no segment); None, not known (the segments ride inline in Bytewax's state). It
    keeps a segment no snapshot names for at least ``backup_interval_s`` (Bytewax's ``-b``).
    Connectors are built lazily by Bytewax, per partition, so nothing connects here.
    """
    progress = Progress(settings.progress)
    ensemble = Ensemble(settings.weights, settings.ensemble_name) if settings.weights else None
    policy = window_policy(settings)
    emit_every, max_classes = settings.emit_every, settings.max_classes
    limits = Limits(settings.max_record_bytes, settings.max_models, settings.max_classes)
    source = source or make_source(settings, heartbeat_from_env())
    sinks = sinks or Sinks.from_settings(settings)
    alerting = Alerting(settings.drift_config(), settings.alert_policy())
    gauges = window_gauges(settings)
    join, shards, ttl_ms = settings.join, settings.join_shards, settings.label_ttl_ms
    accel = settings.use_accel

    def parse(batch: RawBatch) -> ParsedBatch:
        parsed = parse_batch(batch, ensemble, limits, join, accel)
        progress.parsed(parsed)
        return parsed

    def per_model(parsed: ParsedBatch) -> list[tuple[str, ModelColumns]]:
        return list(parsed.by_model.items())

    def by_shard(parsed: ParsedBatch) -> list[tuple[str, tuple[int, str, Halves]]]:
        if parsed.halves is None:
            return []
        stream = reading_worker()
        return [(f"shard-{k}", (k, stream, part)) for k, part in parsed.halves.shards(shards)]

    def by_stream(item: tuple[str, JoinOut]) -> tuple[str, JoinPart]:
        assert isinstance(item[1], JoinPart)
        return item[1].stream, item[1]

    def joined_by_model(item: tuple[str, JoinOut]) -> tuple[str, ModelColumns | JoinCounts]:
        value = item[1]
        assert isinstance(value, ModelColumns | JoinCounts)
        return value.model, value

    def join_letter(item: tuple[str, JoinOut]) -> tuple[str, DeadLetter]:
        assert isinstance(item[1], DeadLetter)
        progress.refused_entries(1)
        return item[1].origin, item[1]

    def dead_letters(parsed: ParsedBatch) -> list[tuple[str, DeadLetter]]:
        return [(letter.origin, letter) for letter in parsed.dead]

    def counted(item: tuple[str, Document]) -> None:
        progress.emitted()
        gauges.observe(item[1])

    def alert_doc(item: tuple[str, Emitted]) -> tuple[str, Doc]:
        assert isinstance(item[1], Alert)
        doc = item[1].doc
        gauges.alerted(doc)
        alert_log.info(
            "%s %s %s at record %d: %s %s (baseline %s)",
            doc["model"],
            doc["name"],
            doc["status"],
            doc["seq"],
            doc["metric"],
            _short(doc["value"]),
            _short(doc["baseline"]),
        )
        return item[0], doc

    def over_limit(item: tuple[str, Emitted]) -> tuple[str, DeadLetter]:
        letter = item[1]
        assert isinstance(letter, DeadLetter)
        progress.refused_entries(1)
        return (letter.origin, letter)

    flow = Dataflow("confusion")
    raw = op.input("read", flow, source)
    parsed = op.map("parse", raw, parse)
    rejected: Any = op.flat_map("rejected", parsed, dead_letters)
    keyed: Any = op.flat_map("by_model", parsed, per_model)
    if join:
        # Delayed labels: halves wait in the join (keyed by shard of the id); joined records
        # and join counts go on to their models' windows, the join's refusals to dead letters.
        halves = op.flat_map("by_shard", parsed, by_shard)
        logs = segment_logs(recovery_dir, backup_interval_s)
        joined: Any = op.stateful_batch(
            "join", halves, lambda resume: JoinLogic(ttl_ms, resume, logs, parts=shards > 1)
        )
        if shards > 1:
            # One batch's parts from every shard, merged back into the order the worker that
            # read them sent them in.
            parts = op.map("join_parts", joined, by_stream)
            joined = op.stateful_batch(
                "join_order", parts, lambda resume: JoinOrderLogic(shards, resume)
            )
        met = op.branch("join_split", joined, lambda item: not isinstance(item[1], DeadLetter))
        keyed = op.merge(
            "with_joined", keyed, op.map("joined_by_model", met.trues, joined_by_model)
        )
        rejected = op.merge(
            "with_join_letters", rejected, op.map("join_letters", met.falses, join_letter)
        )
    out = op.stateful_batch(
        "window",
        keyed,
        lambda resume: ModelWindowLogic(
            policy, emit_every, resume, max_classes=max_classes, alerting=alerting, join=join
        ),
    )
    # The window step also refuses records over CONFUSION_MAX_CLASSES: those join the others;
    # and it raises alerts, which go to their own sinks. Documents (plain dicts, the most
    # items by far) are set apart first, so each passes one branch, not two.
    split = op.branch("split", out, lambda item: type(item[1]) is dict)
    docs: Any = split.trues
    by_kind = op.branch("alerts_apart", split.falses, lambda item: isinstance(item[1], Alert))
    alerts = op.map("alerts_out", by_kind.trues, alert_doc)
    for k, sink in enumerate(sinks.alerts):
        op.output("alerts" if k == 0 else f"alerts_{k}", alerts, sink)
    limited = op.map("over_limit", by_kind.falses, over_limit)
    op.output("dead_letters", op.merge("all_rejected", rejected, limited), sinks.dead_letters)
    op.inspect("count", docs, lambda _step, item: counted(item))
    op.output("documents", docs, sinks.documents)
    if settings.summary:
        # The totals go through the dataflow too: the one summary partition sees every process.
        tallies = op.map("tally", parsed, lambda p: ("summary", Tally.of(p)))
        # Entries refused in the window step (CONFUSION_MAX_CLASSES) count in the totals too.
        refused = op.map("tally_refused", limited, lambda _item: ("summary", Tally(0, 0, 1)))
        op.output(
            "summary", op.merge("to_summary", docs, tallies, refused), SummaryTableSink(progress)
        )
    return flow


def _flow_from_env() -> Dataflow:
    try:
        settings = load_settings()
        set_format(settings.log_format)
        recovery = recovery_dir_from(sys.argv)
        if recovery is not None:
            check_recovery_store(recovery)
        flow = build_flow(
            settings,
            recovery_dir=recovery or "off",
            backup_interval_s=backup_interval_from(sys.argv),
        )
        serve_metrics(settings.metrics_port, settings.metrics_addr)
        return flow
    except OSError as exc:
        print(
            f"confusion-stream: cannot serve metrics on CONFUSION_METRICS_ADDR="
            f"{settings.metrics_addr} CONFUSION_METRICS_PORT={settings.metrics_port}: {exc}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except ConfigError as exc:
        print(
            f"confusion-stream: {exc}"
            + (
                ""
                if isinstance(exc, RecoveryStoreError)
                else "\nNothing was started; fix the variables above and run again "
                "(see README, Configuration)."
            ),
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def __getattr__(name: str) -> Dataflow:
    """``flow``, the job as the environment configures it, built on first access and kept."""
    if name == "flow":
        built = globals()["flow"] = _flow_from_env()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
