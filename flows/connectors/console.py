"""Documents as JSON lines on stdout, for a look or a pipe; not deduplicated across replays."""

from __future__ import annotations

import sys
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows.connectors.files import encode_json


class _StdoutPartition(StatelessSinkPartition[tuple[str, Any]]):
    def write_batch(self, items: list[tuple[str, Any]]) -> None:
        sys.stdout.buffer.write(b"".join(encode_json(doc) for _, doc in items))
        sys.stdout.buffer.flush()


class ConsoleSink(DynamicSink[tuple[str, Any]]):
    """Every worker writes its own documents to this process's stdout."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdoutPartition:
        return _StdoutPartition()
