"""The real dataflow for the benchmarks: ``python -m bytewax.run bench.flow_job``.

It is `flows.confusion.build_flow` with the settings from the ``CONFUSION_*`` environment, the
only change being the ``documents`` output: with ``BENCH_SINK=discard`` (the default) it goes to
`DiscardSink`, which counts documents and drops them; with ``BENCH_SINK=real`` the configured sink
is kept. When the run ends, one JSON line per process is appended to ``BENCH_RESULT`` (if set):
the time the flow was built, the time the run ended, the CPU seconds in between (all threads)
and the documents discarded.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from flows.confusion import build_flow
from flows.settings import load_settings

_BUILT = time.time()
_CPU0 = time.process_time()
_lock = threading.Lock()
_documents = 0


class _DiscardPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        global _documents
        with _lock:
            _documents += len(items)


class DiscardSink(DynamicSink[Any]):
    """Drops every item, counting them; one partition per worker, so no routing cost."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DiscardPartition:
        return _DiscardPartition()


def swap_sink(flow: Dataflow, step_name: str, sink: Sink[Any]) -> None:
    """Replace the sink of the output step ``step_name`` (Bytewax steps are frozen dataclasses)."""
    for step in flow.substeps:
        if step.step_name == step_name and hasattr(step, "sink"):
            object.__setattr__(step, "sink", sink)
            return
    names = [step.step_name for step in flow.substeps]
    raise LookupError(f"no output step {step_name!r} in the flow (steps: {names})")


def _report() -> None:
    path = os.environ.get("BENCH_RESULT")
    if path:
        line = {"pid": os.getpid(), "built": _BUILT, "ended": time.time(),
                "cpu": time.process_time() - _CPU0, "documents": _documents}
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def make_flow() -> Dataflow:
    built = build_flow(load_settings())
    if os.environ.get("BENCH_SINK", "discard") == "discard":
        swap_sink(built, "documents", DiscardSink())
    return built


flow = make_flow()
atexit.register(_report)
