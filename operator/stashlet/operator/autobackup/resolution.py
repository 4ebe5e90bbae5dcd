"""Workload or claim + BackupBlueprint -> Repository + BackupConfiguration (auto-backup): pure.

A Deployment, StatefulSet or DaemonSet asks for auto-backup with annotations:

- ``stash.appscode.com/backup-blueprint``: the cluster-scoped BackupBlueprint(s), comma-separated;
- ``stash.appscode.com/target-paths``: the paths to back up, comma-separated;
- ``stash.appscode.com/volume-mounts``: ``name:/mount/path[:subPath]``, comma-separated;
- ``stash.appscode.com/schedule`` (optional): overrides the blueprint's schedule.

A PersistentVolumeClaim takes only the blueprint and schedule annotations, as in Stash (its Job backs the
whole claim up; the other two are refused by name); its blueprint must name the Task ``pvc-backup``, which
the BackupConfiguration keeps, with the claim as its target. A workload's blueprint names no Task (the
sidecar backs it up).

Every ``${VAR}`` in the blueprint's spec is substituted (``TARGET_API_VERSION``, ``TARGET_KIND``
lower-cased, ``TARGET_NAMESPACE``, ``TARGET_NAME``, ``TARGET_RESOURCE``); an unknown or unterminated one is
an error, never a literal. Names, as Stash makes them (short kinds ``deploy``, ``sts``, ``ds``; a claim's is
``persistentvolumeclaim``):

- the BackupConfiguration ``<short kind>-<name>`` in the workload's namespace (``deploy-stash-demo``);
- the Repository in ``spec.repoNamespace`` as ``<namespace>-<short kind>-<name>``
  (``user1-deploy-stash-demo``), or without ``repoNamespace`` as ``<short kind>-<name>`` next to the workload.

With several blueprints every name ends in ``-<blueprint>``. A name too long for what is derived from it
is cut and ends in a hash (BackupConfigurations: 38 characters, so CronJob ``stash-trigger-<name>`` fits
Kubernetes' 52; Repositories: 63, a label value).

Both objects carry ``app.kubernetes.io/created-by: stash-auto-backup`` and name their workload and
blueprint in annotations. The BackupConfiguration is owned by the workload (garbage-collected with it);
the Repository is not: its data outlives the workload.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stashlet.api import names
from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.operator.core.objects import fit_name
from stashlet.operator.core.workloads import CLAIM_KIND, WORKLOAD_KINDS, WorkloadKind
from stashlet.operator.errors import RefuseInput

AUTO_BACKUP_KINDS = ("Deployment", "StatefulSet", "DaemonSet", CLAIM_KIND.kind)
"""The kinds whose annotations are followed."""
TARGET_KINDS: dict[str, WorkloadKind] = {
    kind: CLAIM_KIND if kind == CLAIM_KIND.kind else WORKLOAD_KINDS[kind] for kind in AUTO_BACKUP_KINDS
}
"""Each followed kind by name."""
SHORT_KINDS = {"Deployment": "deploy", "StatefulSet": "sts", "DaemonSet": "ds", "ReplicaSet": "rs"}
CONFIG_NAME_LIMIT = 52 - len(names.CRONJOB_PREFIX)
REPOSITORY_NAME_LIMIT = 63

REPOSITORY_KEYS = ("backend", "usagePolicy", "wipeOut")
"""The Repository spec fields auto-backup owns (others, if any, are left as they are)."""
CONFIG_KEYS = (
    "driver",
    "repository",
    "schedule",
    "task",
    "target",
    "retentionPolicy",
    "runtimeSettings",
    "tempDir",
    "interimVolumeTemplate",
    "backupHistoryLimit",
    "hooks",
    "timeOut",
    "retryConfig",
)
"""The BackupConfiguration spec fields auto-backup owns; ``paused`` stays the user's."""
_PASSED_THROUGH = ("interimVolumeTemplate", "backupHistoryLimit", "hooks", "timeOut", "retryConfig")

VARIABLE = re.compile(r"\$\{([^}]*)\}")


class AutoBackupError(RefuseInput):
    """Why no objects can be made for a workload; the message (the workload's event) names the
    annotation or field."""


@dataclass(frozen=True)
class Target:
    """The workload auto-backup works for."""

    kind: WorkloadKind
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        """``Deployment/user1/stash-demo``: the work-queue key and the value of the target annotation."""
        return f"{self.kind.kind}/{self.namespace}/{self.name}"

    def describe(self) -> str:
        """``Deployment user1/stash-demo``."""
        return f"{self.kind.kind} {self.namespace}/{self.name}"

    @property
    def is_claim(self) -> bool:
        """True for a stand-alone PersistentVolumeClaim (backed up by a Job, Task ``pvc-backup``)."""
        return self.kind == CLAIM_KIND

    @property
    def short_kind(self) -> str:
        """``deploy``, ``sts``, ``ds``."""
        return SHORT_KINDS.get(self.kind.kind, self.kind.kind.lower())


def parse_key(key: str) -> Target | None:
    """The target a queue key (or target annotation) names, or None when it names none."""
    kind, _, rest = key.partition("/")
    namespace, _, name = rest.partition("/")
    if kind not in AUTO_BACKUP_KINDS or not namespace or not name:
        return None
    return Target(TARGET_KINDS[kind], namespace, name)


def target_of(workload: Mapping[str, Any]) -> Target:
    """The target a workload object is."""
    meta = workload.get("metadata") or {}
    return Target(
        TARGET_KINDS[str(workload.get("kind"))],
        str(meta.get("namespace")),
        str(meta.get("name")),
        str(meta.get("uid") or ""),
    )


# ---------------------------------------------------------------- annotations


ANNOTATIONS = (
    names.ANNOTATION_BACKUP_BLUEPRINT,
    names.ANNOTATION_TARGET_PATHS,
    names.ANNOTATION_VOLUME_MOUNTS,
    names.ANNOTATION_SCHEDULE,
)
"""The workload annotations auto-backup reads (a change to any other one is none of its business)."""


@dataclass(frozen=True)
class Request:
    """What a workload's annotations ask for."""

    blueprints: tuple[str, ...]
    paths: tuple[str, ...]
    volume_mounts: tuple[tuple[tuple[str, str], ...], ...]
    """Each mount as ordered ``(key, value)`` pairs (``name``, ``mountPath``, maybe ``subPath``)."""
    schedule: str | None = None


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def blueprint_names(annotations: Mapping[str, str] | None) -> tuple[str, ...]:
    """The blueprints a workload's annotations name (none when not annotated)."""
    return tuple(_items((annotations or {}).get(names.ANNOTATION_BACKUP_BLUEPRINT, "")))


def parse_request(annotations: Mapping[str, str] | None, *, claim: bool = False) -> Request | None:
    """The request in ``annotations`` (of a claim, with ``claim``); None without a blueprint annotation;
    AutoBackupError when malformed."""
    annotations = annotations or {}
    if names.ANNOTATION_BACKUP_BLUEPRINT not in annotations:
        return None
    blueprints = blueprint_names(annotations)
    if not blueprints:
        raise AutoBackupError(f"annotation {names.ANNOTATION_BACKUP_BLUEPRINT} names no BackupBlueprint")
    if claim:
        return _claim_request(annotations, blueprints)
    problems: list[str] = []
    paths = _items(annotations.get(names.ANNOTATION_TARGET_PATHS, ""))
    if not paths:
        problems.append(f"annotation {names.ANNOTATION_TARGET_PATHS} is required (comma-separated paths)")
    problems += [
        f"annotation {names.ANNOTATION_TARGET_PATHS}: {p!r} is not an absolute path"
        for p in paths
        if not p.startswith("/")
    ]
    mounts: list[tuple[tuple[str, str], ...]] = []
    raw_mounts = _items(annotations.get(names.ANNOTATION_VOLUME_MOUNTS, ""))
    if not raw_mounts:
        problems.append(
            f"annotation {names.ANNOTATION_VOLUME_MOUNTS} is required (name:/mount/path[:subPath], "
            "comma-separated)"
        )
    for item in raw_mounts:
        parts = [p.strip() for p in item.split(":")]
        if len(parts) not in (2, 3) or not all(parts) or not parts[1].startswith("/"):
            problems.append(
                f"annotation {names.ANNOTATION_VOLUME_MOUNTS}: {item!r} is not name:/mount/path[:subPath]"
            )
            continue
        mount = [("name", parts[0]), ("mountPath", parts[1])]
        if len(parts) == 3:
            mount.append(("subPath", parts[2]))
        mounts.append(tuple(mount))
    schedule = annotations.get(names.ANNOTATION_SCHEDULE, "").strip() or None
    if problems:
        raise AutoBackupError("; ".join(problems))
    return Request(tuple(dict.fromkeys(blueprints)), tuple(paths), tuple(mounts), schedule)


def _claim_request(annotations: Mapping[str, str], blueprints: tuple[str, ...]) -> Request:
    """A claim's request: blueprints and schedule only (its Job backs up the whole claim, as Stash's)."""
    extra = [a for a in (names.ANNOTATION_TARGET_PATHS, names.ANNOTATION_VOLUME_MOUNTS) if a in annotations]
    if extra:
        raise AutoBackupError(
            "; ".join(
                f"annotation {a} is not read for a PersistentVolumeClaim: its backup job mounts the whole "
                "claim (remove the annotation)"
                for a in extra
            )
        )
    schedule = annotations.get(names.ANNOTATION_SCHEDULE, "").strip() or None
    return Request(tuple(dict.fromkeys(blueprints)), (), (), schedule)


# ---------------------------------------------------------------- variables


def variables(target: Target) -> dict[str, str]:
    """The values of the blueprint variables for ``target``."""
    return {
        "TARGET_API_VERSION": target.kind.api_version,
        "TARGET_KIND": target.kind.kind.lower(),
        "TARGET_NAMESPACE": target.namespace,
        "TARGET_NAME": target.name,
        "TARGET_RESOURCE": target.kind.plural,
    }


def resolve(spec: Any, values: Mapping[str, str], path: str = "spec") -> Any:
    """``spec`` with every ``${VAR}`` in its strings replaced; AutoBackupError naming each field whose
    variable is unknown or unterminated."""
    problems: list[str] = []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        unknown = [m for m in VARIABLE.findall(value) if m not in values]
        if unknown:
            listed = ", ".join("${" + u + "}" for u in dict.fromkeys(unknown))
            problems.append(f"{where}: unknown variable {listed}")
            return value
        resolved = VARIABLE.sub(lambda m: values[m.group(1)], value)
        if "${" in resolved:
            problems.append(f"{where}: unterminated variable in {value!r}")
        return resolved

    resolved = walk(copy.deepcopy(spec), path)
    if problems:
        known = ", ".join("${" + v + "}" for v in values)
        raise AutoBackupError("; ".join(problems) + f" (known variables: {known})")
    return resolved


# ---------------------------------------------------------------- names


def _suffix(blueprint: str, several: bool) -> str:
    return f"-{blueprint}" if several else ""


def config_name(target: Target, blueprint: str, *, several: bool = False) -> str:
    """The BackupConfiguration's name: ``<short kind>-<name>[-<blueprint>]``."""
    return fit_name(f"{target.short_kind}-{target.name}{_suffix(blueprint, several)}", CONFIG_NAME_LIMIT)


def repository_name(
    target: Target, blueprint: str, repo_namespace: str | None, *, several: bool = False
) -> str:
    """The Repository's name: ``[<namespace>-]<short kind>-<name>[-<blueprint>]``."""
    base = f"{target.short_kind}-{target.name}{_suffix(blueprint, several)}"
    return fit_name(f"{target.namespace}-{base}" if repo_namespace else base, REPOSITORY_NAME_LIMIT)


# ---------------------------------------------------------------- objects


@dataclass(frozen=True)
class Plan:
    """The objects one blueprint makes for one workload."""

    blueprint: str
    repository: dict[str, Any]
    config: dict[str, Any]

    @property
    def repository_key(self) -> tuple[str, str]:
        """``(namespace, name)`` of the Repository."""
        meta = self.repository["metadata"]
        return meta["namespace"], meta["name"]

    @property
    def config_name(self) -> str:
        """The BackupConfiguration's name."""
        return str(self.config["metadata"]["name"])


def _metadata(name: str, namespace: str, target: Target, blueprint: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            names.LABEL_MANAGED_BY: names.MANAGED_BY,
            names.LABEL_CREATED_BY: names.CREATED_BY_AUTO_BACKUP,
        },
        "annotations": {
            names.ANNOTATION_AUTO_BACKUP_TARGET: target.key,
            names.ANNOTATION_AUTO_BACKUP_BLUEPRINT: blueprint,
        },
    }


def owner_reference(target: Target) -> dict[str, Any]:
    """The workload as the BackupConfiguration's controller (no ``blockOwnerDeletion``: that would need
    the right to update the workload's finalizers)."""
    return {
        "apiVersion": target.kind.api_version,
        "kind": target.kind.kind,
        "name": target.name,
        "uid": target.uid,
        "controller": True,
    }


def build(blueprint: BackupBlueprint, target: Target, request: Request, *, several: bool = False) -> Plan:
    """The Repository and BackupConfiguration ``blueprint`` makes for ``target``; AutoBackupError when the
    blueprint cannot be resolved for it."""
    bp_name = blueprint.metadata.name or ""
    spec: dict[str, Any] = resolve(blueprint.spec.to_dict(), variables(target))
    backup_namespace = spec.get("backupNamespace")
    if backup_namespace and backup_namespace != target.namespace:
        raise AutoBackupError(
            f"spec.backupNamespace: {backup_namespace!r} is not supported; the BackupConfiguration goes "
            f"next to its target in {target.namespace!r}"
        )
    _check_task(spec, target)
    repo_namespace = spec.get("repoNamespace") or None
    repo_name = repository_name(target, bp_name, repo_namespace, several=several)
    repo_spec: dict[str, Any] = {"backend": spec["backend"]}
    for key in ("usagePolicy", "wipeOut"):
        if spec.get(key) is not None:
            repo_spec[key] = spec[key]
    repository = {
        "apiVersion": names.API_VERSION_ALPHA,
        "kind": names.KIND_REPOSITORY,
        "metadata": _metadata(repo_name, repo_namespace or target.namespace, target, bp_name),
        "spec": repo_spec,
    }
    config_spec: dict[str, Any] = {
        "driver": "Restic",
        "repository": {"name": repo_name, "namespace": repo_namespace or target.namespace},
        "retentionPolicy": spec["retentionPolicy"],
        "runtimeSettings": spec.get("runtimeSettings") or {},
    }
    schedule = request.schedule or spec.get("schedule")
    if schedule:
        config_spec["schedule"] = schedule
    ref = {"apiVersion": target.kind.api_version, "kind": target.kind.kind, "name": target.name}
    config_spec["target"] = (
        {"ref": ref}
        if target.is_claim
        else {
            "paths": list(request.paths),
            "ref": ref,
            "volumeMounts": [dict(mount) for mount in request.volume_mounts],
        }
    )
    config_spec["task"] = spec.get("task") or {}
    config_spec["tempDir"] = spec.get("tempDir") or {}
    for key in _PASSED_THROUGH:
        if spec.get(key) is not None:
            config_spec[key] = spec[key]
    meta = _metadata(config_name(target, bp_name, several=several), target.namespace, target, bp_name)
    meta["ownerReferences"] = [owner_reference(target)]
    config = {
        "apiVersion": names.API_VERSION_BETA,
        "kind": names.KIND_BACKUP_CONFIGURATION,
        "metadata": meta,
        "spec": config_spec,
    }
    return Plan(bp_name, repository, config)


def _check_task(spec: Mapping[str, Any], target: Target) -> None:
    """A claim's blueprint names ``pvc-backup``; a workload's names no Task (AutoBackupError otherwise)."""
    task = (spec.get("task") or {}).get("name")
    if not target.is_claim:
        if task:
            raise AutoBackupError(
                f"spec.task.name: {task!r} is not supported for a {target.kind.kind}: workloads are "
                "backed up by the sidecar, without a Task"
            )
        return
    wanted = sorted(names.PVC_BACKUP_TASKS)[0]
    if not task:
        raise AutoBackupError(
            f"spec.task.name: a PersistentVolumeClaim is backed up by the Task {wanted!r}; the blueprint "
            "names none"
        )
    if task not in names.PVC_BACKUP_TASKS:
        raise AutoBackupError(
            f"spec.task.name: {task!r} is not supported for a PersistentVolumeClaim; use {wanted!r}"
        )
