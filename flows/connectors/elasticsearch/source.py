"""Elasticsearch in: prediction records from an index, alias or pattern, in ``_seq_no`` order.

The cursor. Every shard numbers the operations it applies with ``_seq_no`` (0, 1, 2, ...), so
one Bytewax partition per (concrete index, shard) reads that shard's documents in ``_seq_no``
order, a page at a time (``_seq_no`` in ``(next - 1, next - 1 + page]``, sorted,
``preference=_shards:N``), and its snapshot is the next ``_seq_no`` to read: a resume asks for
``_seq_no >= snapshot`` and neither skips nor repeats a document.

Refresh visibility. Operations of one shard are applied by several indexing threads at once: a
document with ``_seq_no`` 41 can be searchable while 40 is still being written, and a reader
that went past 41 would never see 40. So every partition reads only up to a safe point: the
shard's global checkpoint (every ``_seq_no`` at or below it has been applied on every in-sync
copy), read from the index stats *before* a refresh of the index, so the refresh makes all of
them searchable on whichever copy answers. Nothing above the safe point is read until a later
checkpoint covers it. See README, "Elasticsearch as a source", for what this assumes of the index.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from elasticsearch import NotFoundError

from flows.connectors.elasticsearch.bulk import EsClientOptions, Retrier, safe_url
from flows.connectors.retry import Backoff
from flows.errors import ConfigError, SinkError
from flows.output.documents import now_ms
from flows.parsing.batches import RawBatch
from flows.settings import Settings
from flows.telemetry import Heartbeat, job_logger

MAX_PAGE = 10_000  # index.max_result_window's default: a larger search page is refused
NOTHING = -1  # the global checkpoint of a shard that has applied no operation yet

log = job_logger("elasticsearch")


def part_name(index: str, shard: int) -> str:
    """``index/shard``; ``/`` cannot occur in an index name, so the split is unambiguous."""
    return f"{index}/{shard}"


def split_part(name: str) -> tuple[str, int]:
    index, _, shard = name.rpartition("/")
    return index, int(shard)


def source_bytes(source: Any) -> bytes:
    """A hit's ``_source`` as JSON bytes for the parser: orjson's key order (as stored) and
    number formatting; an integer beyond 64 bits (which orjson refuses) goes through ``json``,
    so the parser sees it and refuses it as it does everywhere else."""
    try:
        return orjson.dumps(source)
    except TypeError:
        return json.dumps(source, ensure_ascii=False).encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class Page:
    """One search page of a shard: each document's ``_seq_no`` and its bytes, in order."""

    seq_nos: list[int]
    values: list[bytes]


class ShardReader:
    """The three requests a shard partition makes; all retried while transient."""

    def __init__(self, retrier: Retrier, index: str, shard: int) -> None:
        self._retrier = retrier
        self.index, self.shard = index, shard

    def safe_point(self) -> int:
        """The highest ``_seq_no`` below which every document is searchable, now.

        The global checkpoint is read first and the refresh comes after, so every operation it
        covers was applied before the refresh began and is in the reader it opens.
        """
        client = self._retrier.client
        backoff = Backoff(self._retrier.max_backoff)
        while True:
            stats = self._retrier.call(
                f"index stats of {self.index}",
                lambda: client.indices.stats(index=self.index, level="shards", metric="docs"),
            )
            copies = stats["indices"].get(self.index, {}).get("shards", {}).get(str(self.shard))
            primary = [c for c in copies or [] if c["routing"]["primary"]]
            if primary:
                break
            # No started primary (red index, recovery): wait, as for any transient failure.
            # Never StopIteration here: Bytewax would take it for the end of the shard.
            pause = backoff.next_delay()
            log.warning(
                "%s shard %d has no started primary; retrying in %.1fs",
                self.index,
                self.shard,
                pause,
            )
            time.sleep(pause)
        checkpoint = int(primary[0]["seq_no"]["global_checkpoint"])
        self._retrier.call(
            f"a refresh of {self.index}", lambda: client.indices.refresh(index=self.index)
        )
        return checkpoint

    def page(self, after: int, upto: int) -> Page:
        """Every document with ``after < _seq_no <= upto``, in ``_seq_no`` order.

        The caller keeps ``upto - after`` at most the page size: a shard holds one live document
        per ``_seq_no`` at most, so the page holds them all, and Elasticsearch sorts only those
        (a sort over the whole rest of the shard made each page cost as much as the backlog).
        """
        client = self._retrier.client

        def search() -> Any:
            return client.search(
                index=self.index,
                preference=f"_shards:{self.shard}",
                size=max(upto - after, 1),
                sort=[{"_seq_no": "asc"}],
                query={"range": {"_seq_no": {"gt": after, "lte": upto}}},
                track_total_hits=False,
                filter_path=["hits.hits._source", "hits.hits.sort"],
            )

        body = self._retrier.call(f"a search of {self.index} shard {self.shard}", search)
        hits = body.get("hits", {}).get("hits", [])
        return Page(
            [int(hit["sort"][0]) for hit in hits],
            [source_bytes(hit.get("_source")) for hit in hits],
        )


class _ShardPartition(StatefulSourcePartition[RawBatch, int]):
    """One shard; each poll returns at most one `RawBatch` of up to ``batch_size`` documents."""

    def __init__(
        self,
        reader: ShardReader,
        resume: int | None,
        *,
        start: str,
        poll: float,
        batch_size: int,
        stop_at_end: bool,
        heartbeat: Heartbeat,
    ) -> None:
        self._reader = reader
        self._origin = part_name(reader.index, reader.shard)
        self._headers = {"index": reader.index, "shard": str(reader.shard)}
        self._poll = timedelta(seconds=poll)
        self._size = min(batch_size, MAX_PAGE)
        self._heartbeat = heartbeat
        self._safe = NOTHING  # everything up to here is searchable (as of the last look)
        self._wake_at: datetime | None = None
        self._looked_at: datetime | None = None  # when the safe point was last asked for
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[tuple[int, int], Future[Page]] | None = None  # the page read ahead
        self._ended = False
        if resume is not None:
            self._next = resume
            log.info(
                "partition %s: resuming at _seq_no %d from the checkpoint", self._origin, resume
            )
        elif start == "earliest":
            self._next = 0
            log.info("partition %s: no checkpoint, starting at the first document", self._origin)
        else:  # latest: pinned to a number now, so a snapshot never holds "the end"
            self._safe = reader.safe_point()
            self._next = self._safe + 1
            log.info(
                "partition %s: no checkpoint, starting after _seq_no %d (latest)",
                self._origin,
                self._safe,
            )
        # Bounded: the end is the safe point found when the partition starts.
        self._end = reader.safe_point() if stop_at_end else None
        if self._end is not None:
            self._safe = self._end

    def next_batch(self) -> list[RawBatch]:
        self._heartbeat.beat()
        if self._next > self._safe:
            if self._end is not None:
                return self._end_of_input()
            # Caught up: at most one look (stats + refresh) per poll interval, so a steady
            # trickle of documents does not make the source refresh the index back to back.
            now = datetime.now(UTC)
            if self._looked_at is not None and now < self._looked_at + self._poll:
                self._wake_at = self._looked_at + self._poll
                return []
            self._looked_at = now
            self._safe = self._reader.safe_point()
            if self._next > self._safe:
                self._wake_at = now + self._poll
                return []
        self._wake_at = None
        page = self._take(self._next - 1, min(self._safe, self._next - 1 + self._size))
        if not page.values:  # only holes (deleted, updated or no-op sequence numbers)
            return []
        arrival = now_ms()
        return [
            RawBatch(
                page.values, [arrival] * len(page.values), self._origin, page.seq_nos, self._headers
            )
        ]

    def _take(self, after: int, upto: int) -> Page:
        """The page ``(after, upto]``, fetched ahead while the dataflow worked on the last one.

        Elasticsearch searches while the dataflow parses and counts; only one page is ever
        ahead, and the snapshot stays the position of what was handed on, so a crash drops the
        page read ahead and the resume reads it again.
        """
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (after, upto):
            page = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            page = self._reader.page(after, upto)
        self._next = upto + 1
        if self._next <= self._safe:
            following = (upto, min(self._safe, upto + self._size))
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"es-read-{self._origin}")
            self._ahead = (following, self._pool.submit(self._reader.page, *following))
        return page

    def _end_of_input(self) -> list[RawBatch]:
        if self._ended:
            raise StopIteration
        self._ended = True  # one empty batch says "end reached", as the file source does
        return [RawBatch([], [], self._origin, [], self._headers)]

    def next_awake(self) -> datetime | None:
        return self._wake_at

    def snapshot(self) -> int:
        """The next ``_seq_no`` to read."""
        return self._next

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class ElasticsearchSource(FixedPartitionedSource[RawBatch, int]):
    """Documents of every shard of the indices ``pattern`` names, one partition per shard.

    The partitions are fixed when the job starts (Bytewax's `FixedPartitionedSource` lists them
    once): an index created later that matches the pattern is read only after a restart, and
    then, having no checkpoint, from where ``start`` says. Shards are the unit of parallelism:
    give the indices at least as many shards in total as there are workers.
    """

    def __init__(
        self,
        options: EsClientOptions,
        pattern: str,
        *,
        start: str = "earliest",
        poll: float = 1.0,
        batch_size: int = 1000,
        stop_at_end: bool = False,
        max_backoff: float = 30.0,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.options = options
        self.pattern = pattern
        self.start = start
        self.poll = poll
        self.batch_size = batch_size
        self.stop_at_end = stop_at_end
        self.max_backoff = max_backoff
        self.heartbeat = heartbeat or Heartbeat(None)

    def __repr__(self) -> str:
        return (
            f"ElasticsearchSource({self.options!r}, pattern={self.pattern!r}, start={self.start})"
        )

    def _retrier(self) -> Retrier:
        return Retrier(self.options.client(), self.max_backoff, self.options.ca_certs)

    def list_parts(self) -> list[str]:
        """``index/shard`` for every shard of every concrete index the pattern names now."""
        retrier = self._retrier()
        client = retrier.client

        def shard_counts() -> dict[str, Any]:
            try:
                return dict(
                    client.indices.get_settings(
                        index=self.pattern, name="index.number_of_shards", expand_wildcards="open"
                    )
                )
            except NotFoundError:  # a concrete name that does not exist (a pattern matches none)
                return {}

        found = retrier.call(f"the settings of {self.pattern}", shard_counts)
        shards = {
            index: int(body["settings"]["index"]["number_of_shards"])
            for index, body in found.items()
        }
        if not shards:
            raise ConfigError(
                f"no open index matches CONFUSION_ES_SOURCE_INDEX="
                f"{self.pattern!r}; create it first or fix the variable"
            )
        return [
            part_name(index, shard) for index in sorted(shards) for shard in range(shards[index])
        ]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ShardPartition:
        index, shard = split_part(for_part)
        return _ShardPartition(
            ShardReader(self._retrier(), index, shard),
            resume_state,
            start=self.start,
            poll=self.poll,
            batch_size=self.batch_size,
            stop_at_end=self.stop_at_end,
            heartbeat=self.heartbeat,
        )


def elasticsearch_source(settings: Settings, heartbeat: Heartbeat) -> ElasticsearchSource:
    """The source for ``CONFUSION_SOURCE=elasticsearch``.

    It asks the cluster once, here, which shards the pattern names: a pattern that matches no
    open index (a typo, a wrong cluster or credentials) stops the job at start with exit 2, as
    other bad settings do. Bytewax lists them again when it builds the partitions.
    """
    assert settings.es_source_index is not None and settings.es_url is not None
    source = ElasticsearchSource(
        EsClientOptions.from_settings(settings),
        settings.es_source_index,
        start=settings.es_source_start,
        poll=settings.es_source_poll,
        batch_size=settings.batch_size,
        stop_at_end=settings.es_source_stop_at_end,
        max_backoff=settings.es_max_backoff,
        heartbeat=heartbeat,
    )
    try:
        shards = source.list_parts()
    except SinkError as exc:  # refused for good (401, 403, ...): a setting to fix
        raise ConfigError(
            f"CONFUSION_ES_SOURCE_INDEX={settings.es_source_index!r}: {exc}"
        ) from None
    log.info(
        "reading %s (%d shards) at %s (start=%s%s)",
        settings.es_source_index,
        len(shards),
        safe_url(settings.es_url),
        settings.es_source_start,
        ", stop at end" if settings.es_source_stop_at_end else "",
    )
    return source
