"""Command-line tools beside the job, each run as ``python -m flows.tools.<name>``.

``health`` (liveness probe) and ``recovery_init`` (the pods' init step) import only the standard
library: the kubelet runs them often and at every start. ``produce`` (load records into Kafka)
imports confluent_kafka, pydantic and, for ``--demo`` only, numpy; never Bytewax. Keep new tools
as light: import the dataflow's modules only where a tool really needs them.
"""
