"""Run the built image the way a pod runs it: docker, podman, or buildah with chroot isolation.

A container here is what the kubelet makes of the image: the image's own user, working
directory and environment, a root filesystem that is read-only (``readOnlyRootFilesystem``),
host directories bound where the pod mounts its volumes, the host's network (the loopback
Kafka and Elasticsearch, and the peers on 127.0.1.x). Only the standard library is used, so
``scripts/image run`` works before any virtualenv exists.

Engines, picked by `detect` (``CONFUSION_IMAGE_ENGINE`` forces one):

- ``docker``/``podman``: ``run --read-only``, ``exec`` for probes, ``kill --signal``.
- ``buildah`` (no Docker engine, and ``podman run`` refused, as on this project's VM, whose
  kernel denies crun's cgroup and rlimit setup): ``buildah run --isolation chroot``. It has no
  read-only flag, so the container's overlay mount is remounted read-only before the run, after
  creating the volumes' mount points in its writable layer, as runc does. Two differences
  from a pod, both checked where they matter: buildah writes ``/run/.containerenv`` into the
  root and removes it afterwards, so a host directory is bound over ``/run`` (the tests assert
  nothing else lands in it); and chroot isolation makes no PID namespace, so PID 1 is the
  host's: the probes get ``--since-pid`` with the container's first process (tini) instead.
  Mounting needs root, as buildah's chroot isolation does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENGINES = ("docker", "podman", "buildah")
# Files a runtime binds over: they must exist before the root becomes read-only.
RUNTIME_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")


@dataclass(frozen=True)
class Mount:
    """A host directory bound into the container (a pod volume)."""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """What the image declares about how it runs (its OCI config)."""

    entrypoint: list[str]
    cmd: list[str]
    user: str
    workdir: str
    env: dict[str, str]

    @property
    def command(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def _run(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def _works(*args: str) -> bool:
    try:
        return subprocess.run(args, capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def detect(image: str) -> str:
    """The engine that can run ``image`` here: docker, then podman, then buildah."""
    forced = os.environ.get("CONFUSION_IMAGE_ENGINE")
    if forced:
        if forced not in ENGINES:
            raise ValueError(f"CONFUSION_IMAGE_ENGINE={forced!r}: expected one of {ENGINES}")
        return forced
    if shutil.which("docker") and _works("docker", "info"):
        return "docker"
    if shutil.which("podman") and _works("podman", "run", "--rm", "--pull=never", image, "true"):
        return "podman"
    if shutil.which("buildah"):
        return "buildah"
    raise RuntimeError("no container engine: install buildah (scripts/image tools) or docker")


def image_config(engine: str, image: str) -> ImageConfig:
    """The image's entrypoint, command, user, working directory and environment."""
    cli = "docker" if engine == "docker" else "podman"
    raw = json.loads(_run(cli, "image", "inspect", image))[0]
    config = raw.get("Config") or raw.get("config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    return ImageConfig(
        list(config.get("Entrypoint") or []),
        list(config.get("Cmd") or []),
        config.get("User") or "",
        config.get("WorkingDir") or "/",
        env,
    )


def image_size(engine: str, image: str) -> int:
    cli = "docker" if engine == "docker" else "podman"
    return int(_run(cli, "image", "inspect", "--format", "{{.Size}}", image))


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    """``pid``'s descendants, parents before children."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def _in_container(pid: int) -> bool:
    """Whether ``pid`` is one of the container's own processes: chrooted, and not buildah's
    helper (``buildah-chroot-exec``, the parent of the container's first process)."""
    try:
        chrooted = os.readlink(f"/proc/{pid}/root") != "/"
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return chrooted and not argv0.startswith(b"buildah-")


@dataclass
class Container:
    """One container of ``image``, created by `start`; ``remove`` it when done."""

    engine: str
    image: str
    config: ImageConfig
    mounts: list[Mount]
    read_only: bool
    name: str = field(default_factory=lambda: f"confusion-image-test-{uuid.uuid4().hex[:10]}")
    process: subprocess.Popen[bytes] | None = None
    mountpoint: Path | None = None  # buildah: the container's root filesystem on the host
    run_dir: Path | None = None  # buildah: the host directory standing in for /run
    _created: set[str] = field(default_factory=set)

    # -------------------------------------------------------------- lifecycle

    def start(
        self,
        command: Sequence[str] | None,
        env: Mapping[str, str],
        *,
        stdout: int | None = subprocess.PIPE,
        user: str | None = None,
        log: Path | None = None,
    ) -> None:
        """Run ``command`` (default: the image's entrypoint + cmd) as the image's user.

        Output goes to pipes (read them with `wait`), or with ``log`` to that file: a process
        that runs long must not block on a full pipe.
        """
        argv = list(command) if command is not None else self.config.command
        user = user or self.config.user
        if self.engine == "buildah":
            self._prepare_buildah()
            args = [
                "buildah",
                "run",
                "--isolation",
                "chroot",
                "--network",
                "host",
                "--user",
                user,
                "--workingdir",
                self.config.workdir,
                *self._env_args(env),
                *self._volume_args(),
                self.name,
                "--",
                *argv,
            ]
        else:
            args = [
                self.engine,
                "run",
                "--name",
                self.name,
                "--pull=never",
                "--network",
                "host",
                "--user",
                user,
                "--workdir",
                self.config.workdir,
                *self._env_args(env),
                *self._volume_args(),
            ]
            if self.read_only:
                args.append("--read-only")
                if self.engine == "podman":
                    args.append("--read-only-tmpfs=false")
            args += ["--entrypoint", argv[0], self.image, *argv[1:]]
        if log is not None:
            with log.open("ab") as out:
                self.process = subprocess.Popen(
                    args,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            return
        self.process = subprocess.Popen(
            args,
            stdout=stdout,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait(self, timeout: float) -> tuple[int, bytes, bytes]:
        """Wait for the container's command to end: exit code, stdout, stderr."""
        assert self.process is not None
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out or b"", err or b""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exec(
        self, command: Sequence[str], env: Mapping[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the running container (an exec probe, ``kubectl exec``)."""
        if self.engine == "buildah":
            args = [
                "buildah",
                "run",
                "--isolation",
                "chroot",
                "--network",
                "host",
                "--user",
                self.config.user,
                "--workingdir",
                self.config.workdir,
                *self._env_args(env),
                *self._volume_args(),
                self.name,
                "--",
                *command,
            ]
        else:
            args = [
                self.engine,
                "exec",
                "--user",
                self.config.user,
                *self._env_args(env),
                self.name,
                *command,
            ]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)

    def pid1(self) -> int | None:
        """The host pid of the container's first process; None where it is PID 1 in its own
        namespace (docker, podman)."""
        if self.engine != "buildah" or self.process is None:
            return None
        inside = [p for p in _descendants(self.process.pid) if _in_container(p)]
        return inside[0] if inside else None

    def signal(self, sig: signal.Signals) -> None:
        """SIGKILL: every process of the container, as a node loss or the kubelet's final
        kill does. Other signals go to PID 1 (tini), as the kubelet sends SIGTERM."""
        if self.engine != "buildah":
            _run(self.engine, "kill", "--signal", sig.name, self.name, check=False)
            return
        assert self.process is not None
        inside = [p for p in _descendants(self.process.pid) if _in_container(p)]
        for pid in inside if sig == signal.SIGKILL else inside[:1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def written(self) -> list[str]:
        """Paths the container wrote to its own writable layer (not to volumes)."""
        if self.engine != "buildah":
            lines = _run(self.engine, "diff", self.name).splitlines()
            return sorted(line.split(maxsplit=1)[1] for line in lines if line.strip())
        upper, lower = self._overlay_dirs()
        found = set()
        for path in upper.rglob("*"):
            relative = path.relative_to(upper)
            # A directory of the image shows up in the upper layer when something inside it
            # changed or its metadata did (buildah's /run/.containerenv, the working
            # directory): only new directories count as written.
            if (
                path.is_dir()
                and not path.is_symlink()
                and any((layer / relative).is_dir() for layer in lower)
            ):
                continue
            found.add(f"/{relative}")
        return sorted(found - self._created)

    def read(self, path: str) -> bytes:
        """A file of the container's own filesystem (not of a volume), after or while it runs."""
        if self.engine == "buildah":
            assert self.mountpoint is not None
            return (self.mountpoint / path.lstrip("/")).read_bytes()
        done = subprocess.run(
            [self.engine, "cp", f"{self.name}:{path}", "-"],
            capture_output=True,
            timeout=60,
            check=True,
        )
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            assert member is not None, f"{path} is not a file"
            return member.read()

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        if self.engine == "buildah":
            if self.run_dir is not None and self.mountpoint is not None:
                _run("umount", str(self.mountpoint / "run"), check=False)
            _run("buildah", "rm", self.name, check=False)
            if self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            _run(self.engine, "rm", "--force", self.name, check=False)

    # -------------------------------------------------------------- buildah details

    def _prepare_buildah(self) -> None:
        if self.mountpoint is not None:
            return
        _run("buildah", "from", "--pull=never", "--name", self.name, self.image)
        root = Path(_run("buildah", "mount", self.name))
        self.mountpoint = root
        targets = [m.target for m in self.mounts]
        if self.read_only:
            self.run_dir = Path(tempfile.mkdtemp(prefix="confusion-image-run-"))
            self.run_dir.chmod(0o755)
            targets.append("/run")
            for m in self.mounts:  # mount points nested in /run live in its directory
                if m.target.startswith("/run/"):
                    (self.run_dir / m.target[len("/run/") :]).mkdir(parents=True, exist_ok=True)
        before = self._layer_paths()
        for target in targets:
            (root / target.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for path in RUNTIME_FILES:
            (root / path.lstrip("/")).touch(exist_ok=True)
        self._created = self._layer_paths() - before
        if self.read_only:
            _run("mount", "-o", "remount,ro", str(root))
            # buildah creates /run/.containerenv in the root itself and removes it afterwards;
            # a host directory on /run (bound here, so every buildah process sees it) takes it.
            assert self.run_dir is not None
            _run("mount", "--bind", str(self.run_dir), str(root / "run"))

    def _layer_paths(self) -> set[str]:
        upper, _ = self._overlay_dirs()
        return {"/" + str(p.relative_to(upper)) for p in upper.rglob("*")}

    def _overlay_dirs(self) -> tuple[Path, list[Path]]:
        """The container's writable layer and the image's layers, from the overlay mount."""
        assert self.mountpoint is not None
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if line.split()[4] == str(self.mountpoint):
                options = dict(
                    o.split("=", 1)
                    for o in line.split(" - ", 1)[1].split()[2].split(",")
                    if "=" in o
                )
                lower = [Path(d) for d in options.get("lowerdir", "").split(":") if d]
                return Path(options["upperdir"]), lower
        raise RuntimeError(f"{self.mountpoint}: not an overlay mount")

    # -------------------------------------------------------------- arguments

    @staticmethod
    def _env_args(env: Mapping[str, str]) -> list[str]:
        return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]

    def _volume_args(self) -> list[str]:
        mounts = list(self.mounts)
        # Parents before children, so a volume inside another one is not hidden by it.
        mounts.sort(key=lambda m: m.target.count("/"))
        return [
            arg
            for m in mounts
            for arg in ("-v", f"{m.source}:{m.target}{':ro' if m.read_only else ''}")
        ]


def _cli(argv: Sequence[str]) -> int:
    """``scripts/image run``: the image's default command (or ``COMMAND``) as the pod runs it."""
    parser = argparse.ArgumentParser(prog="scripts/image run", description=_cli.__doc__)
    parser.add_argument("--image", required=True)
    parser.add_argument(
        "--writable-root",
        action="store_true",
        help="keep the root filesystem writable (a plain `docker run`)",
    )
    parser.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args(argv)
    engine = detect(args.image)
    config = image_config(engine, args.image)
    tmp = Path(tempfile.mkdtemp(prefix="confusion-image-tmp-"))
    tmp.chmod(0o1777)
    mounts = [] if args.writable_root else [Mount(tmp, "/tmp")]
    container = Container(engine, args.image, config, mounts, not args.writable_root)
    print(
        f"{engine}: {args.image} as {config.user}, root "
        f"{'writable' if args.writable_root else f'read-only, /tmp = {tmp}'}",
        file=sys.stderr,
    )
    env = dict(item.split("=", 1) for item in args.env)
    started = time.monotonic()
    try:
        container.start(args.command or None, env, stdout=None)
        assert container.process is not None
        stderr = container.process.stderr
        assert stderr is not None
        for line in stderr:
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
        code = container.process.wait()
    except KeyboardInterrupt:
        code = 130
    finally:
        container.remove()
    print(f"exit {code} after {time.monotonic() - started:.1f}s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
