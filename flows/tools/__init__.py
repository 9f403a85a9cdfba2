"""Command-line tools around the job: they read its settings and output, never its state."""
