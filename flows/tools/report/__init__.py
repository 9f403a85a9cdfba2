"""``confusion-report``: one self-contained HTML page and PNGs of the job's output.

Modules: `inputs` (JSON-lines files, Elasticsearch indices), `series` (documents folded into
per-model arrays, downsampling), `charts` (Vega-Lite specs), `page` (HTML and PNG), `cli`.
"""
