"""``confusion-report`` as a user runs it (a subprocess): the files it writes, and bad input.

Bad input must give one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.report_docs import page_charts, rich_documents, run_report, window_docs, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def test_writes_page_and_one_png_per_chart(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "out.jsonl", rich_documents())
    result = run_report(source, "-o", tmp_path / "r.html")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"open {(tmp_path / 'r.html').resolve().as_uri()}"
    charts = page_charts(tmp_path / "r.html")
    assert "binary--roc" in charts and "wide--coverage" in charts
    assert "plain--scores" not in charts  # no scores field, no score chart
    pngs = sorted(p.stem for p in (tmp_path / "r-png").glob("*.png"))
    assert pngs == sorted(charts)
    for png in (tmp_path / "r-png").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_page_is_self_contained(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "out.jsonl", list(window_docs("m", 20)))
    assert run_report(source, "-o", tmp_path / "r.html", "--png", "none").returncode == 0
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)  # nothing loaded from away
    assert "window.vegaEmbed" in text  # the renderer is inlined
    assert not (tmp_path / "r-png").exists()


def test_models_and_time_range_select_documents(tmp_path: Path) -> None:
    docs = [
        *window_docs("a", 20, seed=1),
        *window_docs("b", 20, seed=2),
        *window_docs("c", 20, seed=3),
    ]
    source = write_jsonl(tmp_path / "out.jsonl", docs)
    since, until = docs[4]["window"]["end"], docs[9]["window"]["end"]
    result = run_report(
        source,
        "-o",
        tmp_path / "r.html",
        "--png",
        "none",
        "--models",
        "a,c",
        "--since",
        since,
        "--until",
        until,
        "--x",
        "seq",
    )
    assert result.returncode == 0, result.stderr
    charts = page_charts(tmp_path / "r.html")
    assert {cid.split("--")[0] for cid in charts} == {"overview", "a", "c"}
    xs = charts["a--metrics"]["data"]["main"]["cols"]["x"]
    assert sorted(set(xs)) == [500, 600, 700, 800, 900, 1000]


BAD_INPUTS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "no documents in .*empty.jsonl: the file is empty"),
    ("blank", b"\n\n", "no documents in .*blank.jsonl"),
    (
        "version",
        orjson.dumps({**next(window_docs("m", 1)), "v": 2}) + b"\n",
        r"version.jsonl:1: document version 2 is not supported",
    ),
    (
        "record",
        b'{"id": 1, "label": "A", "predictions": {"m": "A"}}\n',
        r"record.jsonl:1: missing 'model'.*not a confusion-stream window or alert document",
    ),
    (
        "matrix",
        orjson.dumps({**next(window_docs("m", 1)), "matrix": [[1]]}) + b"\n",
        r"matrix.jsonl:1: 'matrix' is not 3x3",
    ),
    (
        "garbage",
        orjson.dumps(next(window_docs("m", 1))) + b"\n{not json\n",
        r"garbage.jsonl:2: not valid JSON",
    ),
    ("array", b"[1, 2]\n", r"array.jsonl:1: a JSON list, not a document"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_clear_message_and_exit_2(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(content)
    result = run_report(path, "-o", tmp_path / "r.html")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.search(r"^confusion-report: error: .*" + message, result.stderr, re.M), result.stderr
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["out.jsonl", "--models", "nope"], "no window documents in .* match the models"),
        (["out.jsonl", "--since", "yesterday"], "'yesterday' is not a time"),
        (["out.jsonl", "--since", "2026-11-23", "--until", "2026-11-22"], "--since is after"),
    ],
)
def test_bad_arguments_are_a_clear_message_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    write_jsonl(tmp_path / "out.jsonl", list(window_docs("m", 3)))
    result = subprocess.run(
        [sys.executable, "-m", "flows.tools.report", *args, "--png", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
