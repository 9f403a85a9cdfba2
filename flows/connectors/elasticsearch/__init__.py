"""Elasticsearch: ``mapping`` (index templates and names), ``bulk`` (client options, the retry of
transient failures, bulk requests on a background thread) and ``sink`` (the Bytewax sink that
buffers documents and waits for them at every snapshot)."""
