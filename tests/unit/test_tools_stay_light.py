"""The command-line tools import neither Bytewax nor numpy: probes run often, tools start fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("bytewax", "numpy", "msgspec", "elasticsearch")


@pytest.mark.parametrize(
    "module", ["flows.tools.health", "flows.tools.recovery_init", "flows.tools.produce"]
)
def test_tool_imports_no_dataflow_dependency(module: str) -> None:
    probe = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", f"{module} imports {done.stdout.strip()}"
