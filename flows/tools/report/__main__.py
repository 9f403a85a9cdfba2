"""``python -m flows.tools.report``: the same as the ``confusion-report`` command."""

from flows.tools.report.cli import main

raise SystemExit(main())
