"""confusion-stream: sliding-window confusion matrices for classification models in production.

The pure core (``records``, ``columns``, ``windows``, ``ensemble``, and ``output/``: documents,
metrics, the summary table) knows nothing of Bytewax, Kafka or Elasticsearch; ``connectors/``
know nothing of the math; ``confusion`` wires them into the dataflow that
``python -m bytewax.run flows.confusion`` runs; ``tools/`` holds the light command-line helpers.
"""

__version__ = "0.1.0"
