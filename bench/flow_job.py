"""The real dataflow for the benchmarks: ``python -m bytewax.run bench.flow_job``.

It is `flows.confusion.build_flow` with the settings from the ``CONFUSION_*`` environment, the
only change being the documents sink: with ``BENCH_SINK=discard`` (the default) it is
`DiscardSink`, which counts documents and drops them; with ``BENCH_SINK=real`` the configured sink
is kept. When the run ends, one JSON line per process is appended to ``BENCH_RESULT`` (if set):
the time the flow was built, the time the run ended, the CPU seconds in between (all threads)
and the documents discarded.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.confusion import Sinks, build_flow
from flows.recovery_store import recovery_dir_from
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


def _report() -> None:
    path = os.environ.get("BENCH_RESULT")
    if path:
        line = {
            "pid": os.getpid(),
            "built": _BUILT,
            "ended": time.time(),
            "cpu": time.process_time() - _CPU0,
            "documents": _documents,
        }
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def make_flow() -> Dataflow:
    settings = load_settings()
    sinks = Sinks.from_settings(settings)
    if os.environ.get("BENCH_SINK", "discard") == "discard":
        sinks = replace(sinks, documents=DiscardSink())
    return build_flow(settings, sinks=sinks, recovery_dir=recovery_dir_from(sys.argv) or "off")


flow = make_flow()
atexit.register(_report)
