"""Pin a baseline: record each model's metrics from a window the user trusts.

``python -m flows.tools.baseline --from out/confusion.jsonl --out baseline.json`` takes, per
model, the last full window in a JSON-lines file of documents (``--at`` 2026-11-22T12:00:00Z:
the last full window that ended at or before that time; ``--seq N``: the window emitted at seq
N; ``--model``: only these models). ``--es-url URL --index NAME`` reads the Elasticsearch history
index instead. The job reads the file through ``CONFUSION_ALERT_BASELINE_FILE``; drop/rise rules
then compare with it instead of with each model's first full window.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

KEEP = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "mcc", "kappa", "per_class")


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def choose(
    docs: Iterable[Mapping[str, Any]],
    *,
    at: str | None = None,
    seq: int | None = None,
    models: set[str] | None = None,
) -> dict[str, Mapping[str, Any]]:
    """Per model, the document the baseline is taken from (see the module docstring)."""
    limit = _time(at) if at else None
    chosen: dict[str, Mapping[str, Any]] = {}
    for doc in docs:
        model = doc.get("model")
        window = doc.get("window") or {}
        if not isinstance(model, str) or (models and model not in models):
            continue
        if seq is not None:
            if doc.get("seq") != seq:
                continue
        elif not window.get("full") or (limit and _time(window["end"]) > limit):
            continue
        best = chosen.get(model)
        if best is None or doc["seq"] >= best["seq"]:
            chosen[model] = doc
    return chosen


def baseline_file(chosen: Mapping[str, Mapping[str, Any]], origin: str) -> dict[str, Any]:
    """The JSON the job reads: ``{"v": 1, "models": {model: {"seq", "window", "metrics"}}}``."""
    return {
        "v": 1,
        "recorded_at": datetime.now(tz=UTC).isoformat(timespec="milliseconds"),
        "origin": origin,
        "models": {
            model: {
                "seq": doc["seq"],
                "window": doc["window"],
                "metrics": {k: doc["metrics"].get(k) for k in KEEP},
            }
            for model, doc in sorted(chosen.items())
        },
    }


def read_jsonl(path: Path) -> Iterator[Mapping[str, Any]]:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def read_es(url: str, index: str, at: str | None, seq: int | None) -> Iterator[Mapping[str, Any]]:
    """The candidate documents of the Elasticsearch history index, newest first per model."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(url)
    query: dict[str, Any] = (
        {"term": {"seq": seq}}
        if seq is not None
        else {
            "bool": {
                "filter": [{"term": {"window.full": True}}]
                + ([{"range": {"window.end": {"lte": at}}}] if at else [])
            }
        }
    )
    models = client.search(
        index=index, size=0, query=query, aggs={"m": {"terms": {"field": "model", "size": 10_000}}}
    )
    for bucket in models["aggregations"]["m"]["buckets"]:
        hits = client.search(
            index=index,
            size=1,
            sort=[{"seq": "desc"}],
            query={"bool": {"filter": [query, {"term": {"model": bucket["key"]}}]}},
        )
        for hit in hits["hits"]["hits"]:
            yield hit["_source"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.tools.baseline",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="JSON-lines file of window documents (CONFUSION_OUTPUT)",
    )
    parser.add_argument("--es-url", help="read the Elasticsearch history index instead")
    parser.add_argument("--index", default="confusion-history", help="with --es-url")
    parser.add_argument("--out", type=Path, required=True, help="baseline file to write")
    parser.add_argument("--at", help="last full window ending at or before this RFC 3339 time")
    parser.add_argument("--seq", type=int, help="the window emitted at this seq")
    parser.add_argument("--model", action="append", help="only this model (repeatable)")
    args = parser.parse_args(argv)
    if (args.source is None) == (args.es_url is None):
        parser.error("give exactly one of --from FILE or --es-url URL")
    if args.at:
        try:
            _time(args.at)
        except ValueError:
            parser.error(f"--at {args.at!r} is not an RFC 3339 time")
    docs = (
        read_jsonl(args.source)
        if args.source is not None
        else read_es(args.es_url, args.index, args.at, args.seq)
    )
    chosen = choose(docs, at=args.at, seq=args.seq, models=set(args.model) if args.model else None)
    if not chosen:
        print("baseline: no matching full window found; nothing written", file=sys.stderr)
        return 1
    origin = str(args.source) if args.source is not None else f"{args.es_url}/{args.index}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(
        orjson.dumps(baseline_file(chosen, origin), option=orjson.OPT_INDENT_2) + b"\n"
    )
    for model, doc in sorted(chosen.items()):
        print(
            f"baseline: {model}: seq {doc['seq']}, accuracy {doc['metrics'].get('accuracy')}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
