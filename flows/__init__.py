"""confusion-stream: sliding-window confusion matrices for classification models in production.

The pure core (``records``, ``windows``, ``metrics``, ``ensemble``, ``documents``) knows nothing
of Bytewax, Kafka or Elasticsearch; ``connectors`` know nothing of the math; ``confusion`` wires
them into the dataflow that ``python -m bytewax.run flows.confusion`` runs.
"""

__version__ = "0.1.0"
