"""The image tests report what they built: size, engine and build time."""

from __future__ import annotations

import pytest

from tests.image.build import REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)
