"""Run a workload's container on the host, the way its pod would run it.

KWOK nodes run no containers, so the e2e suite and the quick start check the data plane by
taking the command, arguments, environment and mounted ConfigMaps from the workload the controller
created (a Deployment, StatefulSet or Job) and starting the same command on the host. Only two
things are substituted, and :class:`HostInvocation` records both so callers can say so: mount
paths are re-rooted under a local directory, and chosen flags (the model path, the backend, the
port) can be overridden because a tiny local CPU model stands in for the preset's weights.

The translation is pure: objects in, argv/env/files out. Starting the process is the caller's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataPlaneError(ValueError):
    """The workload cannot be run on the host as it is (missing container, ConfigMap, ...)."""


@dataclass(frozen=True)
class HostInvocation:
    """What to run on the host, and what had to change compared with the pod."""

    argv: list[str]
    env: dict[str, str]
    files: dict[Path, str]
    mount_map: dict[str, Path]
    overrides: dict[str, str] = field(default_factory=dict)
    skipped_env: list[str] = field(default_factory=list)


def pod_spec_of(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of a Deployment, StatefulSet, Job or bare Pod."""
    kind = workload.get("kind")
    if kind == "Pod":
        return workload["spec"]
    try:
        return workload["spec"]["template"]["spec"]
    except KeyError as err:
        name = workload.get("metadata", {}).get("name")
        raise DataPlaneError(f"{kind} {name!r} has no pod template") from err


def find_container(pod_spec: Mapping[str, Any], name: str | None = None) -> Mapping[str, Any]:
    """The named container (or the only/first one) of a pod spec."""
    containers: Sequence[Mapping[str, Any]] = pod_spec.get("containers") or []
    if not containers:
        raise DataPlaneError("pod spec has no containers")
    if name is None:
        return containers[0]
    for container in containers:
        if container.get("name") == name:
            return container
    names = [c.get("name") for c in containers]
    raise DataPlaneError(f"no container named {name!r}; the pod has {names}")


def host_invocation(
    workload: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, Any]],
    *,
    root: Path,
    container: str | None = None,
    flag_overrides: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    mount_overrides: Mapping[str, Path] | None = None,
) -> HostInvocation:
    """Translate one container of ``workload`` into a host command.

    Args:
        workload: the Deployment/StatefulSet/Job/Pod as the API server returns it.
        configmaps: ConfigMap objects by name, for the container's ConfigMap volumes.
        root: local directory under which every mount path is re-rooted.
        container: container name; the first container when omitted.
        flag_overrides: ``{"--model": "/tmp/tiny", ...}``; each flag's value is replaced (or the
            flag appended when the container does not pass it).
        extra_env: environment added on top of the container's.
        mount_overrides: ``{mountPath: host dir}`` for mounts whose content the caller provides
            (an init container's download, say) instead of an empty re-rooted directory.
    """
    pod_spec = pod_spec_of(workload)
    spec = find_container(pod_spec, container)
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mount_map: dict[str, Path] = {}
    files: dict[Path, str] = {}
    for mount in spec.get("volumeMounts") or []:
        given = (mount_overrides or {}).get(mount["mountPath"])
        local = given if given is not None else root / mount["mountPath"].lstrip("/")
        mount_map[mount["mountPath"]] = local
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            files.update(_configmap_files(volume["configMap"], configmaps, local, mount))
    raw_argv = [*(spec.get("command") or []), *(spec.get("args") or [])]
    argv = [_reroot(arg, mount_map) for arg in raw_argv]
    if not argv:
        raise DataPlaneError(
            f"container {spec.get('name')!r} sets no command: the image entrypoint is unknown here"
        )
    overrides = dict(flag_overrides or {})
    argv = _apply_flag_overrides(argv, overrides)
    env, skipped = _container_env(spec, mount_map)
    env.update(extra_env or {})
    return HostInvocation(argv, env, files, mount_map, overrides, skipped)


def _configmap_files(
    source: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, Any]],
    local: Path,
    mount: Mapping[str, Any],
) -> dict[Path, str]:
    name = source["name"]
    if name not in configmaps:
        if source.get("optional"):
            return {}
        raise DataPlaneError(f"ConfigMap {name!r} mounted at {mount['mountPath']} does not exist")
    data: Mapping[str, str] = configmaps[name].get("data") or {}
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    files: dict[str, str] = {}
    for item in items:
        if item["key"] not in data:
            raise DataPlaneError(f"ConfigMap {name!r} has no key {item['key']!r}")
        files[item["path"]] = data[item["key"]]
    if "subPath" in mount:  # one file of the volume mounted at mountPath itself
        if mount["subPath"] not in files:
            raise DataPlaneError(f"ConfigMap {name!r} has no file {mount['subPath']!r} for subPath")
        return {local: files[mount["subPath"]]}
    return {local / path: content for path, content in files.items()}


def _container_env(
    spec: Mapping[str, Any], mount_map: Mapping[str, Path]
) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    skipped: list[str] = []
    for var in spec.get("env") or []:
        if "value" in var:
            env[var["name"]] = _reroot(str(var["value"]), mount_map)
        else:  # valueFrom (secrets, field refs) needs the kubelet; the caller decides
            skipped.append(var["name"])
    return env, skipped


def _reroot(value: str, mount_map: Mapping[str, Path]) -> str:
    """Rewrite a value that names a path under a mount (``/mnt/x/f`` or ``--flag=/mnt/x``)."""
    prefix, sep, path = value.partition("=") if value.startswith("--") else ("", "", value)
    for mount_path in sorted(mount_map, key=len, reverse=True):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            rest = path[len(mount_path) :].lstrip("/")
            local = mount_map[mount_path] / rest if rest else mount_map[mount_path]
            return f"{prefix}{sep}{local}"
    return value


def _apply_flag_overrides(argv: list[str], overrides: Mapping[str, str]) -> list[str]:
    out = list(argv)
    for flag, value in overrides.items():
        for i, arg in enumerate(out):
            if arg == flag and i + 1 < len(out):
                out[i + 1] = value
                break
            if arg.startswith(flag + "="):
                out[i] = f"{flag}={value}"
                break
        else:
            out += [flag, value]
    return out


def write_files(invocation: HostInvocation) -> None:
    """Create every re-rooted mount directory and write the ConfigMap files."""
    for local in invocation.mount_map.values():
        local.mkdir(parents=True, exist_ok=True)
    for path, content in invocation.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
