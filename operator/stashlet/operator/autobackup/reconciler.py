"""One annotated workload or claim in: its Repositories and BackupConfigurations made, updated or deleted:
async.

The pure half is :mod:`stashlet.operator.autobackup.resolution`. For each blueprint the workload names:

1. the blueprint is read and resolved for the workload (missing, or with an unknown variable: a Warning
   event on the workload, and nothing is created or changed);
2. the Repository it describes must admit the workload's namespace by its ``usagePolicy`` (the same rule
   as for any BackupConfiguration, :func:`~stashlet.operator.core.usage_policy.usage_allowed`). Refused: a
   Warning event naming the policy; no Repository is created, and a BackupConfiguration made earlier is
   deleted, so that its finalizer withdraws the agent's access to the Secret;
3. the Repository is created or brought up to date, then the BackupConfiguration. An object of that name
   that auto-backup did not create for this workload is never touched (a Warning event says so).

BackupConfigurations auto-backup made for the workload that are no longer asked for (the annotation gone,
a blueprint dropped from it) are deleted; their sidecar goes with them (the BackupConfiguration
controller's finalizer). Repositories are never deleted: their data must outlive the configuration.

Events go to the workload, from "Auto Backup Controller", with Stash's reasons; a failure is reported
once until its message changes or the workload succeeds. Transient API errors propagate (the queue
retries); a failure that only a change can cure does not (the watches bring the change).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from stashlet.api import names
from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.names import COMPONENT_AUTO_BACKUP
from stashlet.api.repository import Repository
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Invalid, NotFound
from stashlet.kube.events import EventRecorder
from stashlet.operator.autobackup import resolution
from stashlet.operator.autobackup.diff import created_for, update_patch
from stashlet.operator.autobackup.resolution import AutoBackupError, Plan, Target
from stashlet.operator.core.apiclient import ApiClient, call_json
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.usage_policy import usage_allowed
from stashlet.operator.core.validation import needs_namespace_labels

log = logging.getLogger(__name__)

REASON_CREATION_SUCCEEDED = "AutoBackupResourcesCreationSucceeded"
REASON_CREATION_FAILED = "AutoBackupResourcesCreationFailed"
REASON_DELETION_SUCCEEDED = "AutoBackupResourcesDeletionSucceeded"

Model = type[Repository] | type[BackupConfiguration]

SELECTOR = f"{names.LABEL_CREATED_BY}={names.CREATED_BY_AUTO_BACKUP}"
"""Selects what auto-backup created."""


@dataclass
class Result:
    """What one reconcile did, for logs and tests."""

    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class AutoBackupReconciler:
    """Reconciles annotated workloads; holds no per-object state beyond what it last reported."""

    def __init__(self, api: ApiClient) -> None:
        """Use ``api`` (the operator's own identity)."""
        self.stash = StashClient(api)
        self.resources = Resources(api)
        self.recorder = EventRecorder(api, COMPONENT_AUTO_BACKUP)
        self._reported: dict[str, str] = {}

    async def reconcile(self, target: Target) -> Result:
        """Bring the objects made for ``target`` to what its annotations and blueprints ask for."""
        result = Result()
        try:
            workload = await self._read(target)
        except NotFound:  # gone: its configurations go too (also garbage-collected, being owned)
            await self._delete_stale(target, keep=set(), result=result)
            self._forget(target)
            return result
        target = resolution.target_of(workload)
        try:
            request = resolution.parse_request(workload["metadata"].get("annotations"), claim=target.is_claim)
        except AutoBackupError as exc:
            await self._failed(workload, target, "annotations", exc.message, result)
            return result
        if request is None:
            await self._delete_stale(target, keep=set(), result=result, workload=workload)
            self._forget(target)
            return result
        several = len(request.blueprints) > 1
        keep = {resolution.config_name(target, bp, several=several) for bp in request.blueprints}
        refused: set[str] = set()
        for bp_name in request.blueprints:
            plan = await self._plan(workload, target, request, bp_name, several, result)
            if plan is None:
                continue
            if not await self._admitted(workload, target, plan, result):
                refused.add(plan.config_name)
                continue
            await self._apply(workload, target, plan, result)
        await self._delete_stale(target, keep=keep - refused, result=result, workload=workload)
        if not result.failures:
            self._forget(target)
        return result

    # ------------------------------------------------------------ the steps

    async def _read(self, target: Target) -> dict[str, Any]:
        """The workload or claim ``target`` names, with its kind (NotFound when gone)."""
        if not target.is_claim:
            return await self.resources.get_workload(target.kind, target.namespace, target.name)
        read = self.resources.core.read_namespaced_persistent_volume_claim
        claim: dict[str, Any] = await call_json(read, target.name, target.namespace)
        claim.setdefault("apiVersion", target.kind.api_version)
        claim.setdefault("kind", target.kind.kind)
        return claim

    async def _plan(
        self,
        workload: dict[str, Any],
        target: Target,
        request: resolution.Request,
        bp_name: str,
        several: bool,
        result: Result,
    ) -> Plan | None:
        try:
            blueprint = await self.stash.get(BackupBlueprint, None, bp_name)
        except NotFound:
            message = (
                f"BackupBlueprint {bp_name!r} (annotation {names.ANNOTATION_BACKUP_BLUEPRINT}) not found"
            )
            await self._failed(workload, target, bp_name, message, result)
            return None
        try:
            return resolution.build(blueprint, target, request, several=several)
        except AutoBackupError as exc:
            await self._failed(
                workload, target, bp_name, f"BackupBlueprint {bp_name!r}: {exc.message}", result
            )
            return None

    async def _admitted(self, workload: dict[str, Any], target: Target, plan: Plan, result: Result) -> bool:
        repository = Repository.from_dict(plan.repository)
        labels = None
        if needs_namespace_labels(repository):
            labels = await self.resources.namespace_labels(target.namespace)
        decision = usage_allowed(repository, target.namespace, labels)
        if decision.allowed:
            return True
        message = f"BackupBlueprint {plan.blueprint!r}: {decision.message}"
        await self._failed(workload, target, plan.blueprint, message, result)
        return False

    async def _apply(self, workload: dict[str, Any], target: Target, plan: Plan, result: Result) -> None:
        """Both names are checked before either object is written: nothing is made half-way."""
        steps: list[tuple[Model, dict[str, Any], tuple[str, ...]]] = [
            (Repository, plan.repository, resolution.REPOSITORY_KEYS),
            (BackupConfiguration, plan.config, resolution.CONFIG_KEYS),
        ]
        found: list[dict[str, Any] | None] = []
        for model, desired, _ in steps:
            meta = desired["metadata"]
            existing = await self._existing(model, meta["namespace"], meta["name"])
            if existing is not None and not created_for(existing, target):
                message = (
                    f"{model.__name__} {meta['namespace']}/{meta['name']} exists and was not created by "
                    f"auto-backup for {target.describe()}; it is left alone"
                )
                return await self._failed(workload, target, plan.blueprint, message, result)
            found.append(existing)
        written_now: list[str] = []
        try:
            for (model, desired, keys), existing in zip(steps, found, strict=True):
                if await self._write(model, desired, existing, keys):
                    meta = desired["metadata"]
                    written_now.append(f"{model.__name__} {meta['namespace']}/{meta['name']}")
        except Invalid as exc:  # the server refuses the resolved blueprint: only a change can cure that
            message = f"BackupBlueprint {plan.blueprint!r} makes an invalid object: {exc.message}"
            return await self._failed(workload, target, plan.blueprint, message, result)
        if written_now:
            log.info("auto-backup applied", extra={"object": target.key, "written": written_now})
            result.written += written_now
            self._reported.pop(f"{target.key}|{plan.blueprint}", None)
            await self.recorder.record(
                workload,
                "Normal",
                REASON_CREATION_SUCCEEDED,
                f"Successfully created auto backup resources for {target.describe()} from BackupBlueprint "
                f"{plan.blueprint!r}: {', '.join(written_now)}.",
            )
        return None

    async def _existing(self, model: Model, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return (await self.stash.get(model, namespace, name)).to_dict()
        except NotFound:
            return None

    async def _write(
        self, model: Model, desired: dict[str, Any], existing: dict[str, Any] | None, keys: tuple[str, ...]
    ) -> bool:
        """Create ``desired`` or patch what differs from ``existing``; True when something was written."""
        meta = desired["metadata"]
        if existing is None:
            await self.stash.create(model.from_dict(desired))
            return True
        if existing["metadata"].get("deletionTimestamp"):
            return False  # its DELETED event brings the workload back, to make it anew
        patch = update_patch(existing, desired, keys)
        if patch is None:
            return False
        await self.stash.patch(model, meta["namespace"], meta["name"], patch)
        return True

    async def _delete_stale(
        self, target: Target, *, keep: set[str], result: Result, workload: dict[str, Any] | None = None
    ) -> None:
        configs = await self.stash.list(BackupConfiguration, target.namespace, label_selector=SELECTOR)
        for bc in configs:
            name = bc.metadata.name or ""
            if name in keep or not created_for(bc.to_dict(), target):
                continue
            if bc.metadata.deletion_timestamp is not None:
                continue
            with contextlib.suppress(NotFound):
                await self.stash.delete(BackupConfiguration, target.namespace, name)
            result.deleted.append(f"BackupConfiguration {target.namespace}/{name}")
            log.info(
                "auto-backup deleted", extra={"object": f"{target.namespace}/{name}", "target": target.key}
            )
        if result.deleted and workload is not None:
            await self.recorder.record(
                workload,
                "Normal",
                REASON_DELETION_SUCCEEDED,
                f"Successfully deleted auto backup resources for {target.describe()}: "
                f"{', '.join(result.deleted)} (Repositories and their data are kept).",
            )

    # ------------------------------------------------------------ reporting

    async def _failed(
        self, workload: dict[str, Any], target: Target, about: str, reason: str, result: Result
    ) -> None:
        message = f"Failed to create auto backup resources for {target.describe()}. Reason: {reason}"
        result.failures.append(message)
        slot = f"{target.key}|{about}"
        if self._reported.get(slot) == message:
            return
        self._reported[slot] = message
        log.warning("auto-backup failed", extra={"object": target.key, "reason": reason})
        await self.recorder.record(workload, "Warning", REASON_CREATION_FAILED, message)

    def _forget(self, target: Target) -> None:
        prefix = f"{target.key}|"
        for slot in [s for s in self._reported if s.startswith(prefix)]:
            del self._reported[slot]
