"""Benchmarks of confusion-stream: ``python bench/<name>.py`` runs one, ``bench/run`` all."""
