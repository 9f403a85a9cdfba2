"""Reading the job's output: JSON-lines files or the Elasticsearch indices.

Both inputs fold documents into one `Collection` as they stream in, so memory follows the number
of models, not of documents. Anything that is not what the job writes stops the report with a
`ReportInputError` whose message names the file and line, or the index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from flows.tools.report.series import (
    Collection,
    DocumentError,
    Selection,
    check_window_doc,
    is_alert_doc,
    parse_alert,
)


class ReportInputError(Exception):
    """The input cannot make a report: the message says which input and why."""


def read_jsonl(paths: Iterable[Path], selection: Selection) -> Collection:
    """Window and alert documents from JSON-lines files (the jsonl sink's output)."""
    collection = Collection(selection)
    seen_any = False
    for path in paths:
        for where, doc in _lines(path):
            seen_any = True
            _fold(collection, doc, where)
    if not seen_any:
        names = ", ".join(str(p) for p in paths)
        raise ReportInputError(
            f"no documents in {names}: the file is empty "
            "(did the job run and write its output there?)"
        )
    return collection


def _lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ReportInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportInputError(f"{path}: is a directory, not a JSON-lines file") from None
    except PermissionError:
        raise ReportInputError(f"{path}: permission denied") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ReportInputError(f"{where}: not valid JSON ({exc})") from None
            if not isinstance(doc, dict):
                raise ReportInputError(f"{where}: a JSON {type(doc).__name__}, not a document")
            yield where, doc


def _fold(
    collection: Collection, doc: dict[str, Any], where: str, *, need_matrix: bool = True
) -> None:
    try:
        if is_alert_doc(doc):
            collection.add_alert(parse_alert(doc, where))
            return
        check_window_doc(doc, where, need_matrix=need_matrix)
    except DocumentError as exc:
        raise ReportInputError(
            f"{exc}; this is not a confusion-stream window or alert document "
            f"(keys: {', '.join(sorted(doc)[:12])})"
        ) from None
    collection.add_window(doc)


# ------------------------------------------------------------------ Elasticsearch


def _range_query(selection: Selection, time_field: str) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if selection.models is not None:
        filters.append({"terms": {"model": sorted(selection.models)}})
    bounds = {}
    if selection.since_ms is not None:
        bounds["gte"] = selection.since_ms
    if selection.until_ms is not None:
        bounds["lte"] = selection.until_ms
    if bounds:
        filters.append({"range": {time_field: {**bounds, "format": "epoch_millis"}}})
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


def read_elasticsearch(
    client: Any, index: str, selection: Selection, *, where: str, page_size: int = 5000
) -> Collection:
    """History (series), latest (matrices) and alerts indices named after ``index``.

    The history is read without matrices (``_source_excludes``), in pages sorted by a
    point-in-time, so 100,000 documents cost their metrics, not their matrices. Each model's
    newest matrix comes from ``<index>-latest`` when no upper time bound is asked for, else from
    the history's newest document per model in the range (field collapsing on ``model``).
    """
    from elasticsearch import (
        ApiError,
        AuthenticationException,
        AuthorizationException,
        TransportError,
    )
    from elasticsearch import ConnectionError as EsConnectionError

    try:
        return _read_es(client, index, selection, page_size)
    except (AuthenticationException, AuthorizationException) as exc:
        raise ReportInputError(
            f"Elasticsearch at {where} refused the credentials "
            f"(HTTP {exc.meta.status}): check CONFUSION_ES_API_KEY or "
            "CONFUSION_ES_USERNAME/CONFUSION_ES_PASSWORD"
        ) from None
    except EsConnectionError as exc:
        raise ReportInputError(f"cannot reach Elasticsearch at {where}: {exc.message}") from None
    except ApiError as exc:
        raise ReportInputError(
            f"Elasticsearch at {where} answered HTTP {exc.meta.status}: {exc.message}"
        ) from None
    except TransportError as exc:
        raise ReportInputError(f"Elasticsearch at {where}: {exc}") from None


def _exists(client: Any, index: str) -> bool:
    return bool(client.indices.exists(index=index))


def _read_es(client: Any, index: str, selection: Selection, page_size: int) -> Collection:
    latest, alerts = f"{index}-latest", f"{index}-alerts"
    if not _exists(client, index):
        raise ReportInputError(
            f"Elasticsearch index {index!r} does not exist: set CONFUSION_ES_INDEX (or --index) "
            "to the history index the job writes (default confusion-history)"
        )
    collection = Collection(selection)
    query = _range_query(selection, "window.end")
    read = 0
    for hit in _scan(client, index, query, page_size, excludes=["matrix"]):
        _fold(collection, hit["_source"], f"{index}/{hit['_id']}", need_matrix=False)
        read += 1
    if read == 0:
        raise ReportInputError(
            f"Elasticsearch index {index!r} holds no documents"
            + (" for the models and time range asked" if query.get("bool") else "")
        )
    for doc, where in _latest_docs(client, index, latest, selection, query):
        check = dict(doc)
        try:
            check_window_doc(check, where)
        except DocumentError as exc:
            raise ReportInputError(str(exc)) from None
        series = collection.models.get(doc["model"])
        if series is not None and (
            series.latest is None or int(doc["seq"]) >= int(series.latest["seq"])
        ):
            series.latest = doc
    if _exists(client, alerts):
        # Alerts are few; their mapping is the alert sink's, so filter them here, not there.
        for hit in _scan(client, alerts, {"match_all": {}}, page_size):
            _fold(collection, hit["_source"], f"{alerts}/{hit['_id']}")
    return collection


def _latest_docs(
    client: Any, index: str, latest: str, selection: Selection, query: Mapping[str, Any]
) -> Iterator[tuple[dict[str, Any], str]]:
    if selection.until_ms is None and _exists(client, latest):
        for hit in _scan(client, latest, _range_query(selection, "window.end"), 1000):
            yield hit["_source"], f"{latest}/{hit['_id']}"
        return
    response = client.search(
        index=index, query=query, collapse={"field": "model"}, sort=[{"seq": "desc"}], size=10_000
    )
    for hit in response["hits"]["hits"]:
        yield hit["_source"], f"{index}/{hit['_id']}"


def _scan(
    client: Any,
    index: str,
    query: Mapping[str, Any],
    page_size: int,
    excludes: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every hit of ``query``, page by page with a point in time and ``search_after``."""
    pit = client.open_point_in_time(index=index, keep_alive="2m")["id"]
    try:
        after: list[Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "pit": {"id": pit, "keep_alive": "2m"},
                "query": query,
                "size": page_size,
                "sort": [{"_shard_doc": "asc"}],
            }
            if excludes:
                kwargs["source_excludes"] = excludes
            if after is not None:
                kwargs["search_after"] = after
            response = client.search(**kwargs)
            hits = response["hits"]["hits"]
            if not hits:
                return
            pit = response.get("pit_id", pit)
            yield from hits
            after = hits[-1]["sort"]
    finally:
        client.close_point_in_time(id=pit)
