"""``python -m bytewax.run flows.confusion``: the job as users start it, from its variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import flows
from tests.flow.runner import read_jsonl

CODE_ROOT = Path(flows.__file__).resolve().parent.parent


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONFUSION_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE_ROOT), env.get("PYTHONPATH")]))
    env.update({f"CONFUSION_{key.upper()}": value for key, value in settings.items()})
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_module_flow_runs_the_configured_job(tmp_path: Path) -> None:
    out = tmp_path / "documents.jsonl"
    env = _env(
        demo_records="500",
        window_size="50",
        emit_every="100",
        output=str(out),
        dead_letter_path=str(tmp_path / "dead.jsonl"),
        progress="off",
        summary="false",
    )
    done = _run(["-m", "bytewax.run", "flows.confusion"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    docs = read_jsonl(out)
    # The demo's three models each send every record: five documents per model.
    assert sorted((d["model"], d["seq"]) for d in docs) == [
        (model, seq) for model in ("model1", "model2", "model3") for seq in range(100, 501, 100)
    ]
    assert {d["window"]["size"] for d in docs} == {50}


def test_a_bad_setting_stops_the_job_with_exit_2_naming_the_variable(tmp_path: Path) -> None:
    done = _run(["-m", "bytewax.run", "flows.confusion"], _env(window_size="zero"), tmp_path)
    assert done.returncode == 2
    assert "CONFUSION_WINDOW_SIZE" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # nothing was started


def test_importing_the_module_builds_nothing(tmp_path: Path) -> None:
    """Tests and tools import `build_flow` from here; a bad environment must not stop them."""
    done = _run(
        ["-c", "import flows.confusion as c; print(callable(c.build_flow))"],
        _env(window_size="zero"),
        tmp_path,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr
