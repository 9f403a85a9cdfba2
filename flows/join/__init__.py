"""Delayed labels: prediction and label halves that wait for each other, joined by id.

``store`` is the pure join (columns in, joined columns, counts and dead letters out); ``logic``
is its Bytewax stateful operator, one instance per shard of the id space.
"""
