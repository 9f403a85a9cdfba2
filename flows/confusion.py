"""The dataflow: parse -> key by model -> update window state -> document -> sink.

Run it with ``python -m bytewax.run flows.confusion``; every setting comes from ``CONFUSION_*``
environment variables (see README). A configuration error stops the job here, before Bytewax
starts, with a message naming the variable to fix.
"""

from __future__ import annotations

import sys
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from flows.connectors import make_dead_letter_sink, make_document_sink, make_source
from flows.connectors.summary import SummarySink, Tally
from flows.ensemble import Ensemble
from flows.errors import ConfigError
from flows.limits import Limits
from flows.model_state import Doc, ModelWindowLogic, WindowPolicy
from flows.records import DeadLetter, ModelColumns, ParsedBatch, RawBatch, parse_batch
from flows.settings import Settings, load_settings
from flows.telemetry import Progress, heartbeat_from_env


def build_flow(settings: Settings, progress: Progress | None = None) -> Dataflow:
    """Wire the job for ``settings``; connectors are built lazily by Bytewax, per partition."""
    progress = progress or Progress(settings.progress)
    ensemble = Ensemble(settings.weights, settings.ensemble_name) if settings.weights else None
    policy = WindowPolicy(settings.window_size, settings.emit_every, settings.window_kind,
                          settings.window_duration_ms, settings.max_classes)
    limits = Limits(settings.max_record_bytes, settings.max_models, settings.max_classes)

    def parse(batch: RawBatch) -> ParsedBatch:
        parsed = parse_batch(batch, ensemble, limits)
        progress.parsed(parsed)
        return parsed

    def per_model(parsed: ParsedBatch) -> list[tuple[str, ModelColumns]]:
        return list(parsed.by_model.items())

    def dead_letters(parsed: ParsedBatch) -> list[tuple[str, DeadLetter]]:
        return [(letter.origin, letter) for letter in parsed.dead]

    def counted(item: tuple[str, dict[str, Any]]) -> None:
        progress.emitted()

    def over_limit(item: tuple[str, Doc | DeadLetter]) -> tuple[str, DeadLetter]:
        letter = item[1]
        assert isinstance(letter, DeadLetter)
        progress.refused_entries(1)
        return (letter.origin, letter)

    flow = Dataflow("confusion")
    raw = op.input("read", flow, make_source(settings, heartbeat_from_env()))
    parsed = op.map("parse", raw, parse)
    rejected = op.flat_map("rejected", parsed, dead_letters)
    keyed = op.flat_map("by_model", parsed, per_model)
    out = op.stateful_batch("window", keyed, lambda resume: ModelWindowLogic(policy, resume))
    # The window step also refuses records over CONFUSION_MAX_CLASSES: those join the others.
    split = op.branch("split", out, lambda item: not isinstance(item[1], DeadLetter))
    docs: Any = split.trues
    limited = op.map("over_limit", split.falses, over_limit)
    op.output("dead_letters", op.merge("all_rejected", rejected, limited),
              make_dead_letter_sink(settings))
    op.inspect("count", docs, lambda _step, item: counted(item))
    op.output("documents", docs, make_document_sink(settings))
    if settings.summary:
        # The totals go through the dataflow too: the one summary partition sees every process.
        tallies = op.map("tally", parsed, lambda p: ("summary", Tally.of(p)))
        # Entries refused in the window step (CONFUSION_MAX_CLASSES) count in the totals too.
        refused = op.map("tally_refused", limited, lambda _item: ("summary", Tally(0, 0, 1)))
        op.output("summary", op.merge("to_summary", docs, tallies, refused),
                  SummarySink(progress))
    return flow


def _flow_from_env() -> Dataflow:
    try:
        return build_flow(load_settings())
    except ConfigError as exc:
        print(f"confusion-stream: {exc}\nNothing was started; fix the variables above and "
              "run again (see README, Configuration).", file=sys.stderr)
        raise SystemExit(2) from None


flow = _flow_from_env()
