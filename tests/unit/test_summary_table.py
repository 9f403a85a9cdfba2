"""The summary table: a resumed sink (snapshot pickled, as Bytewax stores it) prints the same
table as one that saw every document."""

from __future__ import annotations

import io
import pickle

from flows.connectors.console import SummaryTableSink
from flows.output.documents import Document, document
from flows.telemetry import Progress
from flows.windows.count import CountWindow
from tests.batches import model_batch

T0 = 1_795_341_600_000


def documents() -> list[Document]:
    docs: list[Document] = []
    for model, truths, preds in (("m-a", "AABBA", "ABBBA"), ("m-b", "XYZXY", "XYZZZ")):
        window = CountWindow(3)
        for i, (truth, pred) in enumerate(zip(truths, preds, strict=True)):
            window.add(model_batch([truth], [pred], [f"{model}-{i}"], [T0 + i]))
            docs.append(document(model, window.view(), T0 + 10_000))
    return docs


def table_of(batches: list[list[Document]], resume_between: bool) -> str:
    stream = io.StringIO()
    sink = SummaryTableSink(Progress("off"), stream)
    part = sink.build_part("summary", "summary", None)
    for batch in batches:
        part.write_batch(batch)
        if resume_between:
            state = pickle.loads(pickle.dumps(part.snapshot()))
            part = sink.build_part("summary", "summary", state)
    part.close()
    return stream.getvalue().split("\n", 1)[1]  # the table, without the totals' timing line


def test_resumed_summary_prints_the_uninterrupted_table() -> None:
    docs = documents()
    whole = table_of([docs], resume_between=False)
    resumed = table_of([docs[:3], docs[3:7], docs[7:]], resume_between=True)
    assert resumed == whole
    assert "m-a" in whole and "m-b" in whole
