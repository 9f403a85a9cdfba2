"""The Elasticsearch source's pure pieces: partition names, `_source` bytes, dead-letter ids."""

from __future__ import annotations

import json

import orjson

from flows.connectors.elasticsearch.dead_letters import (
    MAX_ID_BYTES,
    dead_letter_document,
    dead_letter_id,
)
from flows.connectors.elasticsearch.source import part_name, source_bytes, split_part
from flows.parsing.batches import DeadLetter, RawBatch, parse_batch


def test_partition_names_split_back_into_index_and_shard() -> None:
    for index, shard in [("raw_data_input", 0), ("a.b-c_2026.01", 17), ("x", 123)]:
        assert split_part(part_name(index, shard)) == (index, shard)


def test_source_bytes_keep_key_order_and_meaning() -> None:
    source = json.loads('{"id": "r1", "label": "A", "predictions": {"m": {"B": 0.25, "A": 1e-3}}}')
    raw = source_bytes(source)
    assert raw == b'{"id":"r1","label":"A","predictions":{"m":{"B":0.25,"A":0.001}}}'
    assert orjson.loads(raw) == source


def test_an_id_beyond_64_bits_reaches_the_parser_and_is_refused_there() -> None:
    big = 2**70
    raw = source_bytes({"id": big, "label": "A", "predictions": {"m": "A"}})
    assert str(big).encode() in raw
    parsed = parse_batch(RawBatch([raw], [0], "raw/0", [5]), None)
    assert parsed.records == 0 and [d.position for d in parsed.dead] == [5]


def test_dead_letter_ids_follow_the_place_and_fit_elasticsearch() -> None:
    record = DeadLetter(b"{}", "missing 'id'", "raw/2", 41, None, {"index": "raw", "shard": "2"})
    entry = DeadLetter(b"{}", "bad score", "raw/2", 41, "m1", {"index": "raw", "shard": "2"})
    assert (dead_letter_id(record), dead_letter_id(entry)) == ("raw/2/41", "raw/2/41/m1")
    long = DeadLetter(b"{}", "bad", "raw/2", 41, "m" * 600)
    long_id = dead_letter_id(long)
    assert len(long_id.encode()) <= MAX_ID_BYTES and long_id.startswith("raw/2/41/sha256-")
    assert long_id != dead_letter_id(DeadLetter(b"{}", "bad", "raw/2", 41, "m" * 601))
    doc = orjson.loads(dead_letter_document(entry))
    assert doc["source"] == {
        "origin": "raw/2",
        "position": 41,
        "index": "raw",
        "shard": "2",
        "seq_no": 41,
    }
