"""A real Prometheus server (Debian's ``prometheus`` binary) on loopback, for live tests.

It gets its own config and data directory under a temporary path, scrapes the given targets and
evaluates a copy of the project's rules file every ``interval``. In that copy every ``for:`` is
shortened to ``pending_for`` so a live run reaches ``firing`` in seconds; the expressions are
the shipped ones, untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.integration.pipeline import free_port

RULES = Path(__file__).resolve().parents[2] / "k8s" / "prometheus" / "confusion-rules.yml"


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    assert path, "the prometheus binary is missing: scripts/test installs Debian's package"
    return path


class PrometheusServer:
    """Start with ``with PrometheusServer(tmp, ["127.0.0.1:9100"]) as prom: ...``."""

    def __init__(
        self,
        directory: Path,
        targets: list[str],
        *,
        interval: str = "500ms",
        pending_for: str = "1s",
    ) -> None:
        self.directory = directory
        self.targets = targets
        self.interval = interval
        self.pending_for = pending_for
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "prometheus.log"

    def _write_config(self) -> Path:
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = self.pending_for
        (self.directory / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {
                "scrape_interval": self.interval,
                "scrape_timeout": self.interval,
                "evaluation_interval": self.interval,
            },
            "rule_files": [str(self.directory / "rules.yml")],
            "scrape_configs": [
                {"job_name": "confusion-stream", "static_configs": [{"targets": self.targets}]}
            ],
        }
        path = self.directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def __enter__(self) -> PrometheusServer:
        config = self._write_config()
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        self.wait_ready(timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after {timeout:.0f}s")
            time.sleep(0.2)

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) as /api/v1/alerts lists them."""
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["data"]["alerts"]
        return alerts

    def query(self, expr: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        result: list[dict[str, Any]] = self.get(f"/api/v1/query?query={quote(expr)}")["data"][
            "result"
        ]
        return result

    def target_health(self) -> list[str]:
        targets = self.get("/api/v1/targets")["data"]["activeTargets"]
        return [t["health"] for t in targets]
