"""A StatefulSet's pods, played by real processes on loopback.

Each "pod" is what the manifests describe: the init step (``python -m flows.tools.recovery_init``)
writes its hostfile and creates the recovery partitions if missing, then
``python -m bytewax.run flows.confusion`` starts with ``BYTEWAX_POD_NAME``/
``BYTEWAX_STATEFULSET_NAME`` for its ordinal. What a pod has of its own (hostfile, heartbeat,
/tmp) lives in a per-pod directory; the recovery directory is shared, as the one volume is.

Pods listen on ``127.0.1.<ordinal>:<port>``: one port for all, like the pods' 9999 behind
their DNS names. The Prometheus port is per pod, since loopback processes share one network
namespace and pods do not.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.k8s.manifests import REPO

PEER_HOST = "127.0.1.{i}"
JOB = ("python", "-m", "bytewax.run", "flows.confusion")
INIT = ("python", "-m", "flows.tools.recovery_init")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(hosts: Sequence[str] = ("127.0.0.1",)) -> int:
    """A port free on every one of ``hosts`` (and on all interfaces, for the metrics API)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if all(_bindable(h, port) for h in (*hosts, "0.0.0.0")):
            return port
    raise RuntimeError("no free port")


def _local(command: Sequence[str]) -> list[str]:
    """A container command for this machine: ``python`` is this interpreter."""
    return [sys.executable if c == "python" else c for c in command]


@dataclass
class Pod:
    """One running "pod": its process, environment and log."""

    ordinal: int
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['BYTEWAX_DATAFLOW_API_PORT']}/metrics"

    def metric(self, name: str) -> float | None:
        """One sample of ``name`` from the pod's /metrics, None while it does not answer."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class LoopbackStatefulSet:
    """Start, kill and restart a StatefulSet's pods as local processes.

    ``env`` is the pods' common environment (ConfigMap, Secret, StatefulSet env); per pod,
    the paths of its own volumes, its identity and its ports are set here.
    """

    workdir: Path
    env: Mapping[str, str]
    name: str = "confusion-stream"
    port: int = field(default=0)
    job_command: Sequence[str] = JOB
    init_command: Sequence[str] = INIT
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port([PEER_HOST.format(i=i) for i in range(8)])
        (self.workdir / "volume").mkdir(parents=True, exist_ok=True)

    @property
    def recovery_directory(self) -> Path:
        return self.workdir / "volume" / "recovery"

    def pod_env(self, ordinal: int, replicas: int) -> dict[str, str]:
        own = self.workdir / f"pod-{ordinal}"
        (own / "tmp").mkdir(parents=True, exist_ok=True)
        (own / "run").mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            "BYTEWAX_POD_NAME": f"{self.name}-{ordinal}",
            "BYTEWAX_STATEFULSET_NAME": self.name,
            "BYTEWAX_REPLICAS": str(replicas),
            "BYTEWAX_PEER_ADDRESS": f"{PEER_HOST}:{self.port}",
            "BYTEWAX_HOSTFILE_PATH": str(own / "etc" / "hostfile"),
            "BYTEWAX_RECOVERY_DIRECTORY": str(self.recovery_directory),
            "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(own / "tmp"),
            "BYTEWAX_DATAFLOW_API_PORT": str(free_port()),
            "CONFUSION_HEARTBEAT_FILE": str(own / "run" / "heartbeat"),
            "TMPDIR": str(own / "tmp"),
        }
        env.pop("BYTEWAX_PROCESS_ID", None)
        env.pop("BYTEWAX_ADDRESSES", None)
        return env

    def start(self, replicas: int, overrides: Mapping[str, str] | None = None) -> list[Pod]:
        """Init every pod (all at once, as Parallel does), then start every job process."""
        envs = [{**self.pod_env(i, replicas), **(overrides or {})} for i in range(replicas)]
        inits = [
            subprocess.Popen(
                _local(self.init_command),
                env=env,
                cwd=self.workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for env in envs
        ]
        for i, init in enumerate(inits):
            out, _ = init.communicate(timeout=120)
            if init.returncode != 0:
                raise RuntimeError(f"init of pod {i} failed: {out.decode(errors='replace')}")
        self.pods = []
        for i, env in enumerate(envs):
            log = self.workdir / f"pod-{i}" / f"log-{time.monotonic_ns()}.txt"
            with log.open("wb") as out_file:
                process = subprocess.Popen(
                    _local(self.job_command),
                    env=env,
                    cwd=self.workdir / f"pod-{i}" / "tmp",
                    stdout=out_file,
                    stderr=subprocess.STDOUT,
                )
            self.pods.append(Pod(i, process, env, log))
        return self.pods

    def kill(self, pods: Sequence[Pod] | None = None) -> None:
        """SIGKILL, as the kubelet does after the grace period (and as a node loss does)."""
        for pod in self.pods if pods is None else pods:
            if pod.process.poll() is None:
                pod.process.send_signal(signal.SIGKILL)
        for pod in self.pods if pods is None else pods:
            pod.process.wait(timeout=30)

    def probe(self, pod: Pod, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run an exec probe in ``pod``'s environment, as the kubelet would.

        In the pod, PID 1 is the job (under tini) and `flows.tools.health` checks the heartbeat is
        not older than PID 1; here the job's own pid plays PID 1.
        """
        args = _local(command)
        if "flows.tools.health" in args and "--since-pid" not in args:
            args += ["--since-pid", str(pod.process.pid)]
        return subprocess.run(
            args, env=pod.env, capture_output=True, text=True, timeout=30, check=False
        )

    def describe(self) -> str:
        """The pods' exit codes and the tail of their logs, for a failure message."""
        return "\n".join(
            f"--- pod {p.ordinal} (exit {p.process.poll()}):\n{p.log_text()[-3000:]}"
            for p in self.pods
        )


@dataclass(frozen=True)
class RecoveryLog:
    """What Bytewax 0.21's recovery partitions say (read-only, while the job runs).

    ``executions`` holds ``(number, worker_count, resume_epoch)`` per run: a resume epoch
    above 1 means that run resumed from a snapshot. ``resume_epoch`` is where a restart would
    resume now, computed as Bytewax does: the lowest frontier among the last run's workers
    (every epoch before it has been snapshotted by all of them).
    """

    executions: list[tuple[int, int, int]]
    resume_epoch: int


def recovery_log(directory: Path) -> RecoveryLog:
    executions: set[tuple[int, int, int]] = set()
    fronts: dict[tuple[int, int], int] = {}
    for part in sorted(directory.glob("part-*.sqlite3")):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=10) as db:
            executions.update(
                db.execute("SELECT ex_num, worker_count, resume_epoch FROM exs").fetchall()
            )
            for ex, worker, frontier in db.execute(
                "SELECT ex_num, worker_index, worker_frontier FROM fronts"
            ):
                fronts[ex, worker] = max(frontier, fronts.get((ex, worker), 0))
    if not executions:
        return RecoveryLog([], 0)
    ex, workers, resumed = max(executions)
    resume = min(max(resumed, fronts.get((ex, w), 0)) for w in range(workers))
    return RecoveryLog(sorted(executions), resume)


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    cluster: LoopbackStatefulSet | None = None,
    every: float = 0.2,
) -> None:
    """Poll ``condition`` until it holds; fail with the pods' logs if it does not in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = cluster.describe() if cluster else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(every)
