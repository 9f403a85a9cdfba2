"""``confusion-report --es`` against the real Elasticsearch node.

Documents are written by the project's own Elasticsearch sink (history and ``-latest`` indices
with its templates), alerts with the bulk API into ``<index>-alerts``, all under unique names.
The page made from Elasticsearch must carry exactly the chart data of the page made from a
JSON-lines file of the same documents.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from flows.connectors.elasticsearch.bulk import EsClientOptions
from flows.connectors.elasticsearch.sink import ElasticsearchSink
from tests.report_docs import alert_doc, page_charts, run_report, window_docs, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
Doc = dict[str, Any]


def report_es(
    es_url: str, index: str, out: Path, *args: str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFUSION_")}
    env |= {
        "CONFUSION_ES_URL": url or es_url,
        "CONFUSION_ES_INDEX": index,
        "CONFUSION_ES_REQUEST_TIMEOUT": "10",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.tools.report",
            "--es",
            "-o",
            str(out),
            "--png",
            "none",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def documents() -> list[Doc]:
    docs: list[Doc] = []
    docs += window_docs("binary", 150, classes=2, seed=1, drift_at=0.5, scores=True)
    docs += window_docs("wide", 60, classes=12, seed=2, labels_join=True)
    docs += window_docs("plain", 40, seed=3)
    return docs


ALERTS = [alert_doc("binary", 7600), alert_doc("binary", 12000, state="resolved", value=0.9)]


@pytest.fixture
def filled_index(es_url: str, es_client: Elasticsearch, es_index: Any, documents: list[Doc]) -> str:
    index = es_index()
    sink = ElasticsearchSink(EsClientOptions(es_url), index)
    part = sink.build_part("documents", "es-0", None)
    part.write_batch(documents)
    part.snapshot()
    part.close()
    actions: list[dict[str, Any]] = []
    for alert in ALERTS:
        actions += [
            {"index": {"_index": f"{index}-alerts", "_id": f"{alert['model']}/{alert['seq']}"}},
            alert,
        ]
    assert not es_client.bulk(operations=actions, refresh=True)["errors"]
    es_client.indices.refresh(index=f"{index}*")
    return index


def test_es_report_equals_file_report(
    es_url: str, filled_index: str, documents: list[Doc], tmp_path: Path
) -> None:
    from_es = report_es(es_url, filled_index, tmp_path / "es.html")
    assert from_es.returncode == 0, from_es.stderr
    source = write_jsonl(tmp_path / "docs.jsonl", [*documents, *ALERTS])
    from_file = run_report(source, "-o", tmp_path / "file.html", "--png", "none")
    assert from_file.returncode == 0, from_file.stderr
    es_charts, file_charts = page_charts(tmp_path / "es.html"), page_charts(tmp_path / "file.html")
    assert set(es_charts) == set(file_charts)
    assert "binary--roc" in es_charts and "wide--coverage" in es_charts
    for cid, chart in file_charts.items():
        assert es_charts[cid]["data"] == chart["data"], cid
    alerts = es_charts["binary--metrics"]["data"]["alerts"]
    assert alerts["n"] == 2


def test_es_report_with_models_and_until(
    es_url: str, filled_index: str, documents: list[Doc], tmp_path: Path
) -> None:
    """An upper time bound takes each model's newest matrix from the history, not -latest."""
    until = next(d for d in documents if d["model"] == "binary" and d["seq"] == 5000)
    result = report_es(
        es_url,
        filled_index,
        tmp_path / "r.html",
        "--models",
        "binary,plain",
        "--until",
        until["window"]["end"],
        "--x",
        "seq",
    )
    assert result.returncode == 0, result.stderr
    charts = page_charts(tmp_path / "r.html")
    assert {cid.split("--")[0] for cid in charts} == {"overview", "binary", "plain"}
    matrix = charts["binary--matrix"]["data"]["main"]["cols"]["n"]
    assert matrix == [v for row in until["matrix"] for v in row]  # the matrix at seq 5000
    assert max(charts["binary--metrics"]["data"]["main"]["cols"]["x"]) == 5000


def test_missing_index_is_a_clear_error(es_url: str, es_index: Any, tmp_path: Path) -> None:
    index = es_index()
    result = report_es(es_url, index, tmp_path / "r.html")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"confusion-report: error: Elasticsearch index '{index}' does not exist" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_unreachable_cluster_is_a_clear_error(es_url: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = report_es(
        es_url, "confusion-history", tmp_path / "r.html", url=f"http://127.0.0.1:{port}"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"cannot reach Elasticsearch at http://127.0.0.1:{port}" in result.stderr


def test_bad_es_setting_names_the_variable(es_url: str, tmp_path: Path) -> None:
    result = report_es(es_url, "Bad Index!", tmp_path / "r.html")
    assert result.returncode == 2
    assert "CONFUSION_ES_INDEX" in result.stderr and "Traceback" not in result.stderr
