"""The real dataflow on a partitioned file input: ``python -m bytewax.testing bench.parts_job -p N``.

`flows.confusion.build_flow` with the settings from the ``CONFUSION_*`` environment, its source
replaced by one JSON-lines file per partition: ``BENCH_PARTS`` lists the files (``os.pathsep``
between them). Bytewax spreads the partitions over the workers of every process, so ``-p 2`` on
two files parses on two cores, which is what the scaling-out benchmark measures.
"""

from __future__ import annotations

import os
from pathlib import Path

from bytewax.dataflow import Dataflow

from flows.confusion import build_flow
from flows.connectors.files import JsonLinesSource
from flows.settings import load_settings


def make_flow() -> Dataflow:
    settings = load_settings()
    first, *more = (Path(p) for p in os.environ["BENCH_PARTS"].split(os.pathsep))
    source = JsonLinesSource(
        first, settings.batch_size, max_bytes=settings.max_record_bytes, more=tuple(more)
    )
    return build_flow(settings, source=source)


flow = make_flow()
