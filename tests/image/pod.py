"""A StatefulSet pod's volumes as host directories, for containers of the built image.

Each volume the pod template declares becomes a directory with what the kubelet would give
it: an ``emptyDir`` is world-writable (0777), a claim is owned by the pod's ``fsGroup`` and
group-writable with the set-group-id bit (what ``fsGroup`` does to a volume). A container gets
exactly its own ``volumeMounts``, read-only where the manifest says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.image.engine import Mount
from tests.k8s.manifests import Obj


def pod_spec(sts: Obj) -> Obj:
    spec: Obj = sts["spec"]["template"]["spec"]
    return spec


def make_volumes(sts: Obj, root: Path, shared: dict[str, Path] | None = None) -> dict[str, Path]:
    """One host directory per volume of the pod (``shared`` ones reused: the RWX claim)."""
    fs_group = pod_spec(sts).get("securityContext", {}).get("fsGroup")
    dirs: dict[str, Path] = {}
    for volume in pod_spec(sts)["volumes"]:
        name = volume["name"]
        if shared and name in shared:
            dirs[name] = shared[name]
            continue
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            path.chmod(0o777)
        else:
            assert "persistentVolumeClaim" in volume, f"volume {name}: unexpected kind"
            if fs_group is not None:
                os.chown(path, 0, int(fs_group))
            path.chmod(0o2775)
        dirs[name] = path
    return dirs


def mounts(container: Obj, volumes: dict[str, Path]) -> list[Mount]:
    """The container's volumeMounts, bound from the pod's volume directories."""
    out = []
    for m in container.get("volumeMounts", []):
        assert "subPath" not in m, "subPath mounts are not modelled here"
        out.append(Mount(volumes[m["name"]], m["mountPath"], bool(m.get("readOnly", False))))
    return out
