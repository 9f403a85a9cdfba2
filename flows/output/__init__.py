"""What the job emits, pure (no Bytewax, no I/O): ``documents`` (one `Document` per model per
emission, its shape written down once as TypedDicts), ``metrics`` (the math, and `METRIC_NAMES`,
the one list of summary metric names that the mapping and the documents follow) and ``summary``
(the per-model table printed when a bounded run ends).

A new metric: compute it in ``metrics``, add its name to `METRIC_NAMES` and its key to
`documents.Metrics`. A new sink goes in ``flows/connectors/`` and is chosen in
``flows/connectors/__init__.py``.
"""
