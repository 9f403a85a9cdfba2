"""The pre-commit hooks run exactly the lint gate of scripts/test (what CI runs)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_pre_commit_runs_the_commands_scripts_test_runs() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["entry"] for repo in config["repos"] for hook in repo["hooks"]}
    gate = {
        line.strip()
        for line in (ROOT / "scripts" / "test").read_text().splitlines()
        if line.startswith((".venv/bin/ruff", ".venv/bin/mypy"))
    }
    assert gate, "scripts/test runs no linter"
    assert hooks == gate
