"""What the manifests promise, asserted: security, resources, probes, identity, recovery, env.

Each test runs on the base (read file by file) and on every overlay (rendered with kustomize
when one is installed), so an overlay cannot quietly undo a promise of the base.
"""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest

from flows.settings import KAFKA_OPT_PREFIX, Settings, kafka_options, load_settings, warn_unknown
from flows.tools import health, recovery_init
from tests.k8s.manifests import (
    REPO,
    Obj,
    Objects,
    container,
    containers,
    mounts_of,
    pod_env,
    quantity,
    secret_data,
    volume_for,
)

MAIN, INIT = "dataflow", "init"
NAMESPACE = "ns-under-test"
MiB = 2**20


def _pod_spec(d: Objects) -> Obj:
    spec: Obj = d.statefulset["spec"]["template"]["spec"]
    return spec


def _env(d: Objects, name: str = MAIN, ordinal: int = 0) -> dict[str, str]:
    sts = d.statefulset
    return pod_env(
        container(sts, name),
        d,
        pod_name=f"{sts['metadata']['name']}-{ordinal}",
        namespace=NAMESPACE,
    )


def _secret_placeholders(d: Objects) -> dict[str, dict[str, str]]:
    """Every secretRef of the main container, filled from the Secret (or its template)."""
    secrets: dict[str, dict[str, str]] = {}
    for source in container(d.statefulset, MAIN).get("envFrom", []):
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            secrets[name] = secret_data(d, name)
            assert secrets[name], f"{d.name}: no Secret (or template) named {name}"
    return secrets


# --------------------------------------------------------------------------- security


def test_every_container_is_non_root_read_only_and_unprivileged(deployment: Objects) -> None:
    pod = _pod_spec(deployment)
    pod_sc = pod.get("securityContext", {})
    assert pod_sc.get("runAsNonRoot") is True
    assert isinstance(pod_sc.get("runAsUser"), int) and pod_sc["runAsUser"] > 0
    assert isinstance(pod_sc.get("runAsGroup"), int) and pod_sc["runAsGroup"] > 0
    assert pod_sc.get("fsGroup") == pod_sc["runAsGroup"], "recovery volume writable by the job"
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), key
    assert pod.get("automountServiceAccountToken") is False
    for c in containers(deployment.statefulset):
        sc = c.get("securityContext", {})
        where = f"{deployment.name}: container {c['name']}"
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("privileged", False) is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        assert sc.get("runAsNonRoot", True) is True and sc.get("runAsUser", 1) != 0, where
        assert sc.get("seccompProfile", {"type": "RuntimeDefault"})["type"] == "RuntimeDefault"


def test_namespace_enforces_the_restricted_pod_security_standard(deployment: Objects) -> None:
    labels = deployment.get("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_no_service_links_that_would_read_as_settings(deployment: Objects) -> None:
    assert _pod_spec(deployment).get("enableServiceLinks") is False


def test_every_path_the_job_writes_is_a_volume_not_the_root_fs(deployment: Objects) -> None:
    sts = deployment.statefulset
    main, init = container(sts, MAIN), container(sts, INIT)
    env = _env(deployment)
    writes = {
        "heartbeat": (main, str(env["CONFUSION_HEARTBEAT_FILE"]).rsplit("/", 1)[0]),
        "temporary files": (main, "/tmp"),
        "dataflow API cache": (main, env["BYTEWAX_DATAFLOW_API_CACHE_PATH"]),
        "recovery partitions": (main, env["BYTEWAX_RECOVERY_DIRECTORY"]),
        "hostfile (init)": (init, _env(deployment, INIT)["BYTEWAX_HOSTFILE_PATH"]),
        "partitions (init)": (init, _env(deployment, INIT)["BYTEWAX_RECOVERY_DIRECTORY"]),
    }
    for what, (c, path) in writes.items():
        found = volume_for(path, c, sts)
        assert found is not None, f"{what}: {path} is on the read-only root filesystem"
        mount_path, volume = found
        assert not mounts_of(c)[mount_path].get("readOnly"), f"{what}: {mount_path} is readOnly"
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume, what
    heartbeat = volume_for(env["CONFUSION_HEARTBEAT_FILE"], main, sts)
    assert heartbeat is not None and "emptyDir" in heartbeat[1], "heartbeat is per pod"


# --------------------------------------------------------------------------- resources


def test_every_container_has_requests_and_limits_that_fit(deployment: Objects) -> None:
    for c in containers(deployment.statefulset):
        res = c.get("resources", {})
        for kind in ("cpu", "memory", "ephemeral-storage"):
            request = quantity(res["requests"][kind])
            limit = quantity(res["limits"][kind])
            assert 0 < request <= limit, f"{c['name']} {kind}: {request} > {limit}"
    for volume in _pod_spec(deployment)["volumes"]:
        if "emptyDir" in volume:
            assert "sizeLimit" in volume["emptyDir"], f"emptyDir {volume['name']} is unbounded"


BASE_PROCESS_MIB = 256  # Python + Bytewax + Kafka and ES clients; 174 MiB measured, + probes


PLAIN_RECORD_BYTES = 128  # an uncompressed log entry: id (<= ~30 chars), int time, list slots


def window_state_bytes(window: int, classes: int, log_bytes: float) -> int:
    """One model's window (flows/windows/count.py `CountWindow.nbytes`), at its largest.

    The ring holds one pair code per record: 1 byte while the label capacity, which doubles as
    labels appear, stays <= 16, 2 up to 256, else 4; the int64 matrix is capacity^2. From
    COMPRESS_FROM records the record log holds ``log_bytes`` per record compressed plus one
    plain open chunk; below, every record is plain.
    """
    from flows.windows.count import COMPRESS_FROM

    capacity = 2 * classes
    code = 1 if capacity <= 16 else 2 if capacity <= 256 else 4
    chunk = max(16, min(4096, window // 8))
    if window >= COMPRESS_FROM:
        log = window * math.ceil(log_bytes) + PLAIN_RECORD_BYTES * chunk
    else:
        log = PLAIN_RECORD_BYTES * (window + chunk)
    return window * code + 8 * capacity**2 + log


def memory_needed(d: Objects) -> tuple[float, float]:
    """(steady, peak) bytes of one pod, from the StatefulSet's sizing annotations.

    steady = process + Kafka prefetch + state; peak adds two more copies of the state, made
    while a snapshot is taken (arrays copied, then pickled) before it reaches the disk. All
    models are assumed on one pod: with few models, hashing does not spread them evenly.
    """
    notes = d.statefulset["metadata"]["annotations"]
    models = int(notes["sizing.confusion-stream/models"])
    classes = int(notes["sizing.confusion-stream/classes"])
    log_bytes = float(notes["sizing.confusion-stream/log-bytes-per-record"])
    topic_partitions = int(notes["sizing.confusion-stream/topic-partitions"])
    env = _env(d)
    window = int(env["CONFUSION_WINDOW_SIZE"])
    prefetch_kib = int(env.get("CONFUSION_KAFKA_OPT_QUEUED_MAX_MESSAGES_KBYTES", "65536"))
    consumers = math.ceil(topic_partitions / d.statefulset["spec"]["replicas"])
    state = models * window_state_bytes(window, classes, log_bytes)
    base = BASE_PROCESS_MIB * MiB + consumers * prefetch_kib * 1024
    return base + state, base + 3 * state


def test_memory_covers_the_sizing_formula(deployment: Objects) -> None:
    steady, peak = memory_needed(deployment)
    res = container(deployment.statefulset, MAIN)["resources"]
    assert quantity(res["requests"]["memory"]) >= steady, f"request < {steady / MiB:.0f} MiB"
    assert quantity(res["limits"]["memory"]) >= peak, f"limit < {peak / MiB:.0f} MiB"


def test_sizing_formula_matches_the_window_implementation() -> None:
    """The formula bounds what `CountWindow.nbytes()` reports for a full window."""
    from flows.windows.count import CountWindow
    from tests.batches import model_batch

    for window in (5000, 20_000):  # a plain and a compressed record log
        classes = 20
        w = CountWindow(window)
        labels = [f"class-{i}" for i in range(classes)]
        n = 2 * window
        truth = [labels[(i * 7) % classes] for i in range(n)]
        pred = [labels[(i * 3) % classes] for i in range(n)]
        ids: list[str | int] = [f"r-{i:09d}" for i in range(n)]
        w.add(model_batch(truth, pred, ids, [1_795_341_600_000 + 50 * i for i in range(n)]))
        assert 0 < w.nbytes() <= window_state_bytes(window, classes, log_bytes=24)


# --------------------------------------------------------------------------- probes


def _health_args(probe: Obj) -> Any:
    command = probe["exec"]["command"]
    assert command[:3] == ["python", "-m", "flows.tools.health"], command
    return health._parser().parse_args(command[3:])


def test_probes_check_the_heartbeat_with_meaningful_limits(deployment: Objects) -> None:
    main = container(deployment.statefulset, MAIN)
    env = _env(deployment)
    settings = load_settings({**env, **_placeholder_secret_env(deployment)})
    startup, liveness, readiness = (
        main[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    )
    for probe in (startup, liveness, readiness):
        args = _health_args(probe)
        assert args.file is None, "the probe must read CONFUSION_HEARTBEAT_FILE like the job"
        assert probe["timeoutSeconds"] >= 2, "a Python start needs more than the 1 s default"
    assert settings.heartbeat_file is not None, "no heartbeat: the probes would always fail"
    live_age = _health_args(liveness).max_age
    snapshot = int(env["BYTEWAX_SNAPSHOT_INTERVAL"])
    # A sink backing off, or a snapshot being written, stops polling for a while: not stuck.
    assert live_age > settings.es_max_backoff + settings.es_request_timeout
    assert live_age > 2 * snapshot
    assert _health_args(readiness).max_age <= live_age
    # Start-up waits for every peer, then loads the state: allow minutes, not seconds.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # The heartbeat is touched at most once a second: a limit near that would flap.
    for probe in (startup, liveness, readiness):
        assert _health_args(probe).max_age >= 10


# --------------------------------------------------------------------------- identity


def test_process_id_and_peers_come_from_the_pod_ordinal(deployment: Objects) -> None:
    sts = deployment.statefulset
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "OnDelete"
    replicas = spec["replicas"]
    name = sts["metadata"]["name"]
    service = deployment.get("Service", spec["serviceName"])
    peers_port = next(
        p["containerPort"] for p in container(sts, MAIN)["ports"] if p["name"] == "peers"
    )
    init_env = _env(deployment, INIT)
    assert int(init_env["BYTEWAX_REPLICAS"]) == replicas, "hostfile length != replicas"
    for c in (MAIN, INIT):
        fields = {v["name"]: v for v in container(sts, c)["env"]}
        assert fields["BYTEWAX_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    addresses = recovery_init.peer_addresses(init_env["BYTEWAX_PEER_ADDRESS"], replicas)
    for ordinal in range(replicas):
        env = _env(deployment, ordinal=ordinal)
        assert "BYTEWAX_PROCESS_ID" not in env and "BYTEWAX_ADDRESSES" not in env
        assert env["BYTEWAX_STATEFULSET_NAME"] == name
        assert env["BYTEWAX_HOSTFILE_PATH"] == init_env["BYTEWAX_HOSTFILE_PATH"]
        # What bytewax.run does with these two variables:
        pod = env["BYTEWAX_POD_NAME"]
        assert int(pod.replace(env["BYTEWAX_STATEFULSET_NAME"] + "-", "")) == ordinal
        assert addresses[ordinal] == (
            f"{name}-{ordinal}.{service['metadata']['name']}."
            f"{NAMESPACE}.svc.cluster.local:{peers_port}"
        )
    # The init container writes the hostfile where the main container reads it.
    hostfile = init_env["BYTEWAX_HOSTFILE_PATH"]
    init_vol = volume_for(hostfile, container(sts, INIT), sts)
    main_vol = volume_for(hostfile, container(sts, MAIN), sts)
    assert init_vol is not None and main_vol is not None and init_vol[1] == main_vol[1]


def test_headless_service_publishes_peers_before_they_are_ready(deployment: Objects) -> None:
    sts = deployment.statefulset
    service = deployment.get("Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container(sts, MAIN)["ports"]}
    for port in service["spec"]["ports"]:
        assert ports[port["targetPort"]] == port["port"]


def test_pdb_allows_one_eviction_at_a_time(deployment: Objects) -> None:
    pdb = deployment.get("PodDisruptionBudget")["spec"]
    labels = deployment.statefulset["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_sigterm_reaches_the_job_and_the_grace_period_is_short(deployment: Objects) -> None:
    main = container(deployment.statefulset, MAIN)
    assert main["command"] == ["/usr/bin/tini", "--"], "Python as PID 1 ignores SIGTERM"
    assert main["args"] == ["python", "-m", "bytewax.run", "flows.confusion"]
    # No final snapshot is taken on SIGTERM, so a long grace period only delays the restart.
    assert 0 < _pod_spec(deployment)["terminationGracePeriodSeconds"] <= 30


def test_image_is_pinned_to_the_package_version(deployment: Objects) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    images = {c["image"] for c in containers(deployment.statefulset)}
    assert len(images) == 1, f"init and job must run the same build: {images}"
    image = images.pop()
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    assert tag and tag != "latest"
    assert tag == version, f"image tag {tag} != pyproject version {version}"


def test_metrics_port_is_exposed_and_announced(deployment: Objects) -> None:
    sts = deployment.statefulset
    env = _env(deployment)
    assert env.get("BYTEWAX_DATAFLOW_API_ENABLED")
    port = int(env.get("BYTEWAX_DATAFLOW_API_PORT", "3030"))
    ports = {p["name"]: p["containerPort"] for p in container(sts, MAIN)["ports"]}
    assert ports["metrics"] == port
    notes = sts["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/port"] == str(port)


# --------------------------------------------------------------------------- recovery


def test_recovery_is_configured_on_one_shared_volume(deployment: Objects) -> None:
    sts = deployment.statefulset
    env, init_env = _env(deployment), _env(deployment, INIT)
    directory = env["BYTEWAX_RECOVERY_DIRECTORY"]
    assert init_env["BYTEWAX_RECOVERY_DIRECTORY"] == directory
    # bytewax.run refuses recovery without both; each is whole seconds (int(s)).
    snapshot = int(env["BYTEWAX_SNAPSHOT_INTERVAL"])
    backup = int(env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"])
    assert snapshot > 0 and backup >= snapshot
    assert "volumeClaimTemplates" not in sts["spec"], "per-pod volumes break rescaling"
    for c in (MAIN, INIT):
        found = volume_for(directory, container(sts, c), sts)
        assert found is not None
        mount_path, volume = found
        # A subdirectory, so the init step can create it with one atomic rename.
        assert directory.rstrip("/") != mount_path.rstrip("/")
        claim = volume["persistentVolumeClaim"]["claimName"]
    pvc = deployment.get("PersistentVolumeClaim", claim)
    modes = pvc["spec"]["accessModes"]
    if deployment.name == "base":
        assert modes == ["ReadWriteMany"], "pods on several nodes share the volume"
    else:
        assert modes[0] in ("ReadWriteMany", "ReadWriteOnce"), "ReadWriteOncePod allows 1 pod"
    workers = int(env.get("BYTEWAX_WORKERS_PER_PROCESS", "1"))
    parts = int(init_env["BYTEWAX_RECOVERY_PARTS"])
    assert parts >= sts["spec"]["replicas"] * workers, "fewer partitions than workers"


# --------------------------------------------------------------------------- env contract


def _placeholder_secret_env(d: Objects) -> dict[str, str]:
    return {k: v for data in _secret_placeholders(d).values() for k, v in data.items()}


def test_every_confusion_variable_is_a_real_setting(deployment: Objects) -> None:
    known = {name.upper() for name in Settings.model_fields}
    sources: dict[str, dict[str, str]] = {
        "ConfigMap": {k: str(v) for k, v in deployment.configmap["data"].items()},
        "Secret": _placeholder_secret_env(deployment),
    }
    for c in containers(deployment.statefulset):
        sources[f"container {c['name']}"] = {v["name"]: v.get("value", "") for v in c["env"]}
    for where, env in sources.items():
        for key in env:
            if not key.startswith("CONFUSION_") or key.startswith(KAFKA_OPT_PREFIX):
                continue
            assert key.removeprefix("CONFUSION_") in known, f"{where}: {key} is no setting"
    assert warn_unknown({**_env(deployment), **sources["Secret"]}) == []


def test_settings_load_from_the_pod_environment(deployment: Objects) -> None:
    env = {**_env(deployment, MAIN)}
    settings = load_settings(env)
    assert settings.source == "kafka" and settings.sink == "elasticsearch"
    assert settings.kafka_bootstrap and settings.kafka_topics and settings.es_url
    secrets = _placeholder_secret_env(deployment)
    for key in secrets:
        if key.startswith(KAFKA_OPT_PREFIX):
            prop = key.removeprefix(KAFKA_OPT_PREFIX).lower().replace("_", ".")
            assert kafka_options(env)[prop] == secrets[key]
    if "CONFUSION_ES_PASSWORD" in secrets:
        assert settings.es_password is not None
        assert secrets["CONFUSION_ES_PASSWORD"] not in repr(settings), "secret printed in clear"


@pytest.mark.parametrize("missing", ["CONFUSION_KAFKA_TOPIC", "CONFUSION_ES_URL"])
def test_the_env_check_would_catch_a_missing_setting(deployment: Objects, missing: str) -> None:
    """The contract test above is not vacuous: dropping a required variable fails."""
    from flows.errors import ConfigError

    env = {k: v for k, v in _env(deployment).items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load_settings(env)
