"""Parsing: raw batches of bytes in, per-model columns and dead letters out.

In the order a batch meets them: `batches` (the shapes sources hand over and parsing hands on,
and `parse_batch`), `fast_path` (the columnar decode and arg-max that takes well-formed records),
`checks` (record-by-record validation, with a reason for every refusal), `labels` (label codes and
the tie rule both paths share), `ensemble` (the weighted ensemble's vote).
"""
