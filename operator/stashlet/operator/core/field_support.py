"""Which field of each Stash kind stashlet carries out, and which it refuses by name: pure.

Every field path the five CRDs accept is in :data:`FIELDS`, as one of:

- :class:`Supported`: stashlet does what Stash documents for it; ``runners`` limits it to some ways of
  running (a container setting an init-container cannot take, a pod setting a sidecar cannot have), and
  ``elsewhere`` says why it is refused for the others. ``opaque`` marks an embedded Kubernetes type taken
  as written (a volume source, a volume mount, a label selector): nothing below it is looked at here.
- :class:`Unsupported`: stashlet does not do it; ``why`` says so, and what to do instead.

:func:`refusals` walks the fields an object actually sets and returns one problem per refused field,
each starting with the field's path (list items by index). The reconcilers add them to
``ValidationPassed``, so an object that asks for something stashlet does not do is never Ready and runs
no session: nothing is ignored silently. Free-form settings (``runtimeSettings.container`` and ``.pod``)
list their keys here too; a key stashlet does not know is refused the same way.

Field paths are written as on the wire, ``[]`` standing for any item of a list:
``spec.target.volumeMounts[].name``. A test walks the CRD schemas and checks that this table names
every path, and names for each supported path the tests that show it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from stashlet.api import names


class Runner(StrEnum):
    """How an object is carried out; some fields apply to one way only."""

    SIDECAR = "sidecar"
    """A workload's volumes, backed up by the agent sidecar in the workload's pods."""
    JOB = "job"
    """A Job per session: a BackupConfiguration's resource dump, or a RestoreSession restored into claims
    (``pvc-restore``, ``volumeClaimTemplates``)."""
    CLAIM_JOB = "claim-job"
    """A stand-alone PersistentVolumeClaim backed up by a Job per session (``pvc-backup``)."""
    VOLUME_SNAPSHOTTER = "volume-snapshotter"
    """``driver: VolumeSnapshotter``: the operator takes VolumeSnapshots of the claims, or makes claims from
    them; no agent, Task or restic runs (:data:`SNAPSHOTTER_REFUSES`)."""
    INIT_CONTAINER = "init-container"
    """A restore into a workload, by the ``stash-init`` init-container."""


@dataclass(frozen=True)
class Supported:
    """A field stashlet carries out as Stash documents it (``tests/operator/core/test_field_support.py``
    names the tests that show it)."""

    runners: frozenset[Runner] | None = None
    """The ways of running it applies to; None for all."""
    elsewhere: str = ""
    """Why it is refused for the other runners."""
    reasons: Mapping[Runner, str] = field(default_factory=dict)
    """Why it is refused for one runner in particular, where ``elsewhere`` does not say it."""
    opaque: bool = False
    """An embedded Kubernetes type taken as written: nothing below it is checked here."""


@dataclass(frozen=True)
class Unsupported:
    """A field stashlet does not carry out; an object that sets it is refused."""

    why: str


Support = Supported | Unsupported


def ok(*, runners: frozenset[Runner] | None = None, elsewhere: str = "", opaque: bool = False) -> Supported:
    """A supported field (for ``runners`` only, when given; refused elsewhere saying ``elsewhere``)."""
    return Supported(runners=runners, elsewhere=elsewhere, opaque=opaque)


def refused(why: str) -> Unsupported:
    """A field stashlet refuses, saying ``why``."""
    return Unsupported(why)


# ---------------------------------------------------------------- runtime settings, per runner

ALL_RUNNERS = frozenset(Runner)
AGENT_RUNNERS = ALL_RUNNERS - {Runner.VOLUME_SNAPSHOTTER}
"""The runners with an agent container (the VolumeSnapshotter driver has none)."""
ONLY_JOB = frozenset({Runner.JOB})
JOBS = frozenset({Runner.JOB, Runner.CLAIM_JOB})
ONLY_SIDECAR = frozenset({Runner.SIDECAR})
READS_FILES = frozenset({Runner.SIDECAR, Runner.CLAIM_JOB})
"""The backup runners that back up files: a workload's (the sidecar) or a claim's (its Job)."""
_TASK_DECIDES = "the resource dump decides what it backs up and reads no volume"

CONTAINER_COPIED: Mapping[str, frozenset[Runner]] = {
    "resources": AGENT_RUNNERS,
    "securityContext": AGENT_RUNNERS,
    "envFrom": AGENT_RUNNERS,
    "imagePullPolicy": AGENT_RUNNERS,
    "lifecycle": ONLY_SIDECAR,
    "livenessProbe": ONLY_SIDECAR,
    "readinessProbe": ONLY_SIDECAR,
}
"""``runtimeSettings.container`` keys copied as given into the agent container, and for which runners
(``env`` is merged separately, under the agent's own downward-API entries)."""

JOB_POD_COPIED = (
    "serviceAccountName",
    "nodeSelector",
    "nodeName",
    "affinity",
    "tolerations",
    "securityContext",
    "imagePullSecrets",
    "priorityClassName",
    "priority",
    "runtimeClassName",
    "schedulerName",
    "topologySpreadConstraints",
)
"""``runtimeSettings.pod`` keys a Job's pod takes as given (a ``serviceAccountName`` also changes what
stashlet grants: :mod:`stashlet.operator.injection.job_rbac`)."""


def container_fields(runner: Runner) -> tuple[str, ...]:
    """The ``runtimeSettings.container`` keys copied as given into ``runner``'s agent container."""
    return tuple(key for key, runners in CONTAINER_COPIED.items() if runner in runners)


_NOT_ON_INIT = (
    "only the sidecar takes probes and lifecycle hooks: an init-container cannot have them, and a Job's "
    "container is not probed"
)
_POD_SHARED = (
    "the agent runs inside the workload's own pod, whose settings are the workload's; pod settings apply "
    "only to a Task's Job"
)


def _runtime(prefix: str) -> dict[str, Support]:
    table: dict[str, Support] = {
        prefix: ok(),
        f"{prefix}.container": ok(),
        f"{prefix}.pod": ok(runners=JOBS, elsewhere=_POD_SHARED),
        f"{prefix}.container.env": ok(opaque=True),
        f"{prefix}.container.nice": ok(opaque=True),
        f"{prefix}.container.ionice": ok(opaque=True),
    }
    for key, runners in CONTAINER_COPIED.items():
        elsewhere = "" if runners == AGENT_RUNNERS else _NOT_ON_INIT
        table[f"{prefix}.container.{key}"] = ok(runners=runners, elsewhere=elsewhere, opaque=True)
    for key in JOB_POD_COPIED:
        table[f"{prefix}.pod.{key}"] = ok(runners=JOBS, elsewhere=_POD_SHARED, opaque=True)
    return table


# ---------------------------------------------------------------- shared blocks

RETENTION: dict[str, Support] = {
    "spec.retentionPolicy": ok(),
    "spec.retentionPolicy.name": ok(),
    "spec.retentionPolicy.prune": ok(),
    "spec.retentionPolicy.dryRun": ok(),
    **{
        f"spec.retentionPolicy.{keep}": ok()
        for keep in (
            "keepLast",
            "keepHourly",
            "keepDaily",
            "keepWeekly",
            "keepMonthly",
            "keepYearly",
            "keepTags",
        )
    },
}

TEMP_DIR: dict[str, Support] = {
    "spec.tempDir": ok(),
    "spec.tempDir.medium": ok(),
    "spec.tempDir.sizeLimit": ok(),
    "spec.tempDir.disableCaching": ok(),
}

_NO_TASK = "the sidecar takes no Task; a spec.task.name makes the configuration a Task's"
TASK: dict[str, Support] = {
    **dict.fromkeys(("spec.task", "spec.task.name"), ok(runners=JOBS, elsewhere=_NO_TASK)),
    **dict.fromkeys(
        ("spec.task.params", "spec.task.params[].name", "spec.task.params[].value"),
        ok(runners=ONLY_JOB, elsewhere="only the resource dump's Task takes params (pvc-backup takes none)"),
    ),
}

INTERIM = refused(
    "an interim volume stages data for Tasks that produce it first (database dumps), which stashlet does "
    "not run; its Tasks and the sidecar read the data in place"
)

BACKEND: dict[str, Support] = {
    "spec.backend": ok(),
    "spec.backend.storageSecretName": ok(),
    "spec.backend.s3": ok(opaque=True),
    "spec.backend.gcs": ok(opaque=True),
    "spec.backend.azure": ok(opaque=True),
    "spec.backend.b2": ok(opaque=True),
    "spec.backend.swift": ok(opaque=True),
    "spec.backend.rest": ok(opaque=True),
    "spec.backend.local": ok(opaque=True),
}

USAGE_POLICY: dict[str, Support] = {
    "spec.usagePolicy": ok(),
    "spec.usagePolicy.allowedNamespaces": ok(),
    "spec.usagePolicy.allowedNamespaces.from": ok(),
    "spec.usagePolicy.allowedNamespaces.selector": ok(opaque=True),
}

WIPE_OUT = ok()
"""``spec.wipeOut``: the backend data is wiped when the Repository is deleted, once nothing uses it
(:mod:`stashlet.operator.repository.wipe_job`)."""

REPOSITORY_FIELDS: dict[str, Support] = {**BACKEND, **USAGE_POLICY, "spec.wipeOut": WIPE_OUT}

REPOSITORY_REF: dict[str, Support] = {
    "spec.repository": ok(),
    "spec.repository.name": ok(),
    "spec.repository.namespace": ok(),
}

TARGET_REF: dict[str, Support] = {
    "spec.target": ok(),
    "spec.target.ref": ok(),
    "spec.target.ref.apiVersion": ok(),
    "spec.target.ref.kind": ok(),
    "spec.target.ref.name": ok(),
    "spec.target.ref.namespace": ok(),
}

ALIAS = ok()
"""``spec.target.alias``: the restic host, as Stash names it (``<alias>``, ``<alias>-<ordinal>``,
``<alias>-<node>``); retention forgets only the target's own hosts and paths."""
DRIVER = ok()
"""``spec.driver``: Restic, or VolumeSnapshotter (:mod:`stashlet.operator.volumesnapshot`)."""

_NO_HOOK_POD = "a Task's Job has no application container for a hook to act on; hooks run in the sidecar"
BACKUP_HOOK = ok(runners=ONLY_SIDECAR, elsewhere=_NO_HOOK_POD, opaque=True)
"""A ``prober.Handler`` (exec, httpGet, httpPost, tcpSocket) the sidecar runs (``stashlet.agent.hooks``)."""

BACKUP_TEMPLATE: dict[str, Support] = {
    "spec.schedule": ok(),
    **TASK,
    **RETENTION,
    **_runtime("spec.runtimeSettings"),
    **TEMP_DIR,
    "spec.interimVolumeTemplate": INTERIM,
    "spec.backupHistoryLimit": ok(),
    "spec.hooks": ok(runners=ONLY_SIDECAR, elsewhere=_NO_HOOK_POD),
    "spec.hooks.preBackup": BACKUP_HOOK,
    "spec.hooks.postBackup": BACKUP_HOOK,
    "spec.timeOut": ok(),
    "spec.retryConfig": ok(),
    "spec.retryConfig.maxRetry": ok(),
    "spec.retryConfig.delay": ok(),
}
"""The fields a BackupBlueprint carries into the BackupConfigurations it makes."""

RESTORE_HOOK = ok(opaque=True)

BACKUP_CONFIGURATION: dict[str, Support] = {
    **BACKUP_TEMPLATE,
    "spec.driver": DRIVER,
    **REPOSITORY_REF,
    "spec.paused": ok(),
    **TARGET_REF,
    "spec.target.alias": ALIAS,
    "spec.target.volumeMounts": ok(runners=READS_FILES, elsewhere=_TASK_DECIDES, opaque=True),
    "spec.target.paths": ok(runners=READS_FILES, elsewhere=_TASK_DECIDES),
    "spec.target.exclude": ok(runners=READS_FILES, elsewhere=_TASK_DECIDES),
    "spec.target.replicas": ok(
        runners=frozenset({Runner.SIDECAR, Runner.VOLUME_SNAPSHOTTER}),
        elsewhere="only a StatefulSet's replicas are chosen by ordinal, by its sidecars or its snapshots",
    ),
    "spec.target.args": ok(runners=READS_FILES, elsewhere=_TASK_DECIDES),
    "spec.target.snapshotClassName": ok(
        runners=frozenset({Runner.VOLUME_SNAPSHOTTER}),
        elsewhere="only the VolumeSnapshotter driver takes a VolumeSnapshotClass",
    ),
}

_WORKLOADS_NEED_NO_TASK = (
    "a workload is restored by the stash-init init-container, without a Task; the Task pvc-restore runs as "
    "a Job"
)

RESTORE_RULES = {
    "rules": ok(),
    "rules[].sourceHost": ok(),
    "rules[].targetHosts": ok(),
    "rules[].snapshots": ok(),
    "rules[].paths": ok(),
    "rules[].include": ok(),
    "rules[].exclude": ok(),
}

RESTORE_SESSION: dict[str, Support] = {
    "spec.driver": DRIVER,
    **REPOSITORY_REF,
    **{f"spec.{path}": support for path, support in RESTORE_RULES.items()},
    **TARGET_REF,
    **{f"spec.target.{path}": support for path, support in RESTORE_RULES.items()},
    "spec.target.alias": ALIAS,
    "spec.target.replicas": ok(),
    "spec.target.args": ok(),
    "spec.target.volumeMounts": ok(opaque=True),
    "spec.target.volumeClaimTemplates": ok(
        runners=frozenset({Runner.JOB, Runner.VOLUME_SNAPSHOTTER}),
        elsewhere="claims from templates are restored by Jobs or made from snapshots, not into a workload",
        opaque=True,
    ),
    **dict.fromkeys(("spec.task", "spec.task.name"), ok(runners=ONLY_JOB, elsewhere=_WORKLOADS_NEED_NO_TASK)),
    **dict.fromkeys(
        ("spec.task.params", "spec.task.params[].name", "spec.task.params[].value"),
        refused("stashlet's pvc-restore takes no params: the rules say what is restored"),
    ),
    **_runtime("spec.runtimeSettings"),
    **TEMP_DIR,
    "spec.interimVolumeTemplate": INTERIM,
    "spec.hooks": ok(),
    "spec.hooks.preRestore": RESTORE_HOOK,
    "spec.hooks.postRestore": RESTORE_HOOK,
    "spec.timeOut": ok(),
}

_NO_AGENT = "no agent container or Job runs with this driver"
_WHOLE_VOLUME = "a VolumeSnapshot holds the whole volume"
_REPOSITORY_UNUSED = "the snapshots are VolumeSnapshots, not restic data in a Repository"
_SNAPSHOTTER_COMMON: Mapping[str, str] = {
    "spec.repository": _REPOSITORY_UNUSED,
    "spec.task": "the operator takes or restores the snapshots itself; no Task runs",
    "spec.hooks": "no agent runs beside the workload to carry hooks out with this driver",
    "spec.runtimeSettings": _NO_AGENT,
    "spec.tempDir": _NO_AGENT,
    "spec.target.alias": "VolumeSnapshots are named after their claims",
    "spec.target.volumeMounts": "the volumes are snapshotted, not mounted",
    "spec.target.args": "no backup program runs with this driver",
}
SNAPSHOTTER_REFUSES: Mapping[str, Mapping[str, str]] = {
    names.KIND_BACKUP_CONFIGURATION: {
        **_SNAPSHOTTER_COMMON,
        "spec.target.paths": _WHOLE_VOLUME,
        "spec.target.exclude": _WHOLE_VOLUME,
        "spec.retentionPolicy.keepTags": "a VolumeSnapshot has no tags",
    },
    names.KIND_RESTORE_SESSION: {
        **_SNAPSHOTTER_COMMON,
        "spec.rules": "a restore from VolumeSnapshots makes whole claims; there is nothing to select",
        "spec.target.rules": "a restore from VolumeSnapshots makes whole claims; there is nothing to select",
        "spec.target.ref": "the restored claims are named by spec.target.volumeClaimTemplates",
    },
}
"""What ``driver: VolumeSnapshotter`` does not use, by field (and everything below it), with why; the
rest of its fields are checked by value in :mod:`stashlet.operator.volumesnapshot.validation`."""


def _refuse_for_snapshotter(table: dict[str, Support], refuses: Mapping[str, str]) -> None:
    for path, support in table.items():
        top = next((p for p in refuses if path == p or path.startswith((f"{p}.", f"{p}["))), None)
        if top is None or not isinstance(support, Supported):
            continue
        runners = (support.runners or ALL_RUNNERS) - {Runner.VOLUME_SNAPSHOTTER}
        reasons = {**support.reasons, Runner.VOLUME_SNAPSHOTTER: refuses[top]}
        table[path] = replace(support, runners=runners, reasons=reasons)


_refuse_for_snapshotter(BACKUP_CONFIGURATION, SNAPSHOTTER_REFUSES[names.KIND_BACKUP_CONFIGURATION])
_refuse_for_snapshotter(RESTORE_SESSION, SNAPSHOTTER_REFUSES[names.KIND_RESTORE_SESSION])

BACKUP_SESSION: dict[str, Support] = {
    "spec.invoker": ok(),
    "spec.invoker.apiGroup": ok(),
    "spec.invoker.kind": ok(),
    "spec.invoker.name": ok(),
    "spec.retryLeft": ok(),
}

BACKUP_BLUEPRINT: dict[str, Support] = {
    **BACKUP_TEMPLATE,
    **dict.fromkeys(("spec.task", "spec.task.name"), ok()),
    **dict.fromkeys(
        ("spec.task.params", "spec.task.params[].name", "spec.task.params[].value"),
        refused("a blueprint's Task is pvc-backup (for an annotated claim), which takes no params"),
    ),
    **REPOSITORY_FIELDS,
    "spec.repoNamespace": ok(),
    "spec.backupNamespace": ok(),
}
"""A blueprint's template fields are checked again on the BackupConfiguration made from it, its backend
fields on the Repository; auto-backup refuses a ``task`` for a workload (a claim's is ``pvc-backup``) and a
``backupNamespace`` other than the target's."""

FIELDS: Mapping[str, Mapping[str, Support]] = {
    names.KIND_BACKUP_CONFIGURATION: BACKUP_CONFIGURATION,
    names.KIND_RESTORE_SESSION: RESTORE_SESSION,
    names.KIND_BACKUP_SESSION: BACKUP_SESSION,
    names.KIND_REPOSITORY: REPOSITORY_FIELDS,
    names.KIND_BACKUP_BLUEPRINT: BACKUP_BLUEPRINT,
}
"""Every field path of every kind's ``spec``, and what stashlet does with it."""


# ---------------------------------------------------------------- the walk


def asks_something(value: Any) -> bool:
    """Whether a field's value asks for anything: not absent, empty, false or zero anywhere below (a
    ``wipeOut: false`` or ``maxRetry: 0`` asks for what stashlet does anyway)."""
    if isinstance(value, Mapping):
        return any(asks_something(child) for child in value.values())
    if isinstance(value, list):
        return any(asks_something(item) for item in value)
    return value not in (None, False, 0, "")


def _children(path: str, shown: str, value: Any) -> Iterator[tuple[str, str, Any]]:
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield f"{path}.{key}", f"{shown}.{key}", child
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, Mapping):
                for key, child in item.items():
                    yield f"{path}[].{key}", f"{shown}[{index}].{key}", child


def refusals(kind: str, spec: Mapping[str, Any], runner: Runner | None = None) -> list[str]:
    """One problem per field of ``spec`` (an object's ``spec`` on the wire) that stashlet refuses for
    ``kind`` run by ``runner``, each starting with the field's path."""
    table = FIELDS[kind]
    problems: list[str] = []
    pending = list(_children("spec", "spec", spec))
    while pending:
        path, shown, value = pending.pop(0)
        if not asks_something(value):
            continue
        support = table.get(path)
        if support is None:
            problems.append(f"{shown}: not a field stashlet knows for a {kind}")
        elif isinstance(support, Unsupported):
            problems.append(f"{shown}: not supported by stashlet: {support.why}")
        elif runner is not None and support.runners is not None and runner not in support.runners:
            why = support.reasons.get(runner, support.elsewhere)
            problems.append(f"{shown}: not supported for a {runner} ({why})")
        elif not support.opaque:
            pending += list(_children(path, shown, value))
    return problems
