"""``confusion-report``: read the job's output, write the HTML page and PNGs, say where.

Exit status: 0 written; 2 bad arguments, settings or input (empty file, a document this report
does not read, a missing index, an unreachable cluster), always with a one-line reason and never
a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from flows.errors import ConfigError
from flows.tools.report.inputs import ReportInputError, read_elasticsearch, read_jsonl
from flows.tools.report.page import build_report, render_html, write_pngs
from flows.tools.report.series import Collection, Selection, parse_time_ms

PROG = "confusion-report"
AUTO_PNG_MODELS = 10


def _time_arg(text: str) -> int:
    """RFC 3339 with an offset, a UTC date (``2026-11-22``), or epoch milliseconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)
        return parse_time_ms(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use RFC 3339 with an offset (2026-11-22T10:00:00Z), "
            "a UTC date (2026-11-22) or epoch milliseconds"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write one self-contained HTML report (and PNGs of its charts) of the "
        "confusion-stream job's output.",
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="JSON-lines files the job wrote (window and alert documents); "
        "default $CONFUSION_OUTPUT (out/confusion.jsonl) and, when it "
        "exists, $CONFUSION_ALERTS_OUTPUT (out/alerts.jsonl)",
    )
    parser.add_argument(
        "--es",
        action="store_true",
        help="read the Elasticsearch indices instead (history, -latest, "
        "-alerts), with the sink's CONFUSION_ES_* settings",
    )
    parser.add_argument(
        "--index", help="history index (default $CONFUSION_ES_INDEX or confusion-history)"
    )
    parser.add_argument("--since", type=_time_arg, help="first window end to include")
    parser.add_argument("--until", type=_time_arg, help="last window end to include")
    parser.add_argument(
        "--models",
        action="append",
        metavar="M[,M...]",
        help="only these models (repeat or comma-separate)",
    )
    parser.add_argument(
        "--x",
        choices=("time", "seq"),
        default="time",
        dest="axis",
        help="x axis of the lines: window end time (default) or seq",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("out/report.html"),
        help="HTML file to write (default out/report.html)",
    )
    parser.add_argument(
        "--png",
        choices=("auto", "all", "overview", "none"),
        default="auto",
        help="PNGs to write: every chart, the overview's, none; auto = all up "
        f"to {AUTO_PNG_MODELS} models, else the overview's",
    )
    parser.add_argument(
        "--png-dir", type=Path, help="directory of the PNGs (default <output>-png next to the HTML)"
    )
    parser.add_argument("--title", default="confusion-stream report")
    return parser


def _selection(args: argparse.Namespace) -> Selection:
    models = None
    if args.models:
        models = frozenset(m.strip() for arg in args.models for m in arg.split(",") if m.strip())
    if args.since is not None and args.until is not None and args.since > args.until:
        raise ReportInputError("--since is after --until")
    return Selection(models=models, since_ms=args.since, until_ms=args.until)


def _read_es(args: argparse.Namespace, selection: Selection) -> tuple[Collection, str]:
    from flows.connectors.elasticsearch.bulk import EsClientOptions, safe_url
    from flows.settings import load_settings

    env = {k: v for k, v in os.environ.items() if k.upper().startswith("CONFUSION_ES_")}
    env["CONFUSION_SINK"] = "elasticsearch"
    if args.index:
        env["CONFUSION_ES_INDEX"] = args.index
    settings = load_settings(env)
    assert settings.es_url is not None  # checked by the settings for the elasticsearch sink
    options = EsClientOptions(
        settings.es_url,
        settings.es_api_key,
        settings.es_username,
        settings.es_password,
        settings.es_ca_certs,
        settings.es_verify_certs,
        settings.es_request_timeout,
    )
    where = safe_url(settings.es_url)
    with options.client() as client:
        collection = read_elasticsearch(client, settings.es_index, selection, where=where)
    return collection, f"Elasticsearch {where}, index {settings.es_index}"


def default_inputs() -> list[Path]:
    """The job's JSON-lines output, and its alerts file when there is one."""
    paths = [Path(os.environ.get("CONFUSION_OUTPUT") or "out/confusion.jsonl")]
    alerts = Path(os.environ.get("CONFUSION_ALERTS_OUTPUT") or "out/alerts.jsonl")
    if alerts.is_file():
        paths.append(alerts)
    return paths


def run(argv: Sequence[str] | None = None) -> Path:
    args = _parser().parse_args(argv)
    selection = _selection(args)
    started = time.perf_counter()
    if args.es:
        if args.inputs:
            raise ReportInputError("give JSON-lines files or --es, not both")
        collection, source = _read_es(args, selection)
    else:
        paths = args.inputs or default_inputs()
        collection = read_jsonl(paths, selection)
        source = ", ".join(str(p) for p in paths)
    if not collection.models:
        raise ReportInputError(
            f"no window documents in {source} match the models and time range asked "
            f"({collection.skipped:,} documents left out)"
        )
    report = build_report(collection, axis=args.axis, title=args.title, source=source)
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(report), encoding="utf-8")
    which = args.png
    if which == "auto":
        which = "all" if len(report.models) <= AUTO_PNG_MODELS else "overview"
        if which == "overview":
            print(
                f"{PROG}: {len(report.models)} models: PNGs of the overview only "
                "(--png all for every chart)",
                file=sys.stderr,
            )
    png_dir = args.png_dir or output.with_name(output.stem + "-png")
    pngs = write_pngs(report, png_dir, which=which)
    size = output.stat().st_size
    print(
        f"{PROG}: {collection.documents:,} documents of {len(report.models)} models, "
        f"{len(report.alerts):,} alerts -> {output} ({size / 1e6:.1f} MB, "
        f"{len(report.charts())} charts) and {len(pngs)} PNGs in {png_dir} "
        f"in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return output


def main(argv: Sequence[str] | None = None) -> int:
    try:
        output = run(argv)
    except (ReportInputError, ConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"open {output.resolve().as_uri()}")
    return 0
