"""One BackupConfiguration's restore drill: its annotations in, its CronJob and RBAC out, its condition.

The condition ``RestoreDrillScheduled`` on the configuration says how the drill stands: True (reason
``RestoreDrillCronJobCreated``) naming the CronJob and schedule; False with ``InvalidRestoreDrill`` (a
message naming each annotation at fault), ``RepositoryNotFound``, ``RepositoryUsageDenied`` (the
Repository's ``spec.usagePolicy`` does not admit the configuration's namespace: no Role is made there) or
``RestoreDrillCronJobFailed`` (the API server refused the CronJob). Each transition is an event on the
configuration (Normal when scheduled, Warning otherwise). While the drill cannot run as asked, nothing of
it is left: an old CronJob would go on drilling as it was once asked to. Removing the annotations removes
the CronJob, the RBAC and the condition.

Only configurations that carry a drill annotation, or the condition (they had one), are looked at: the
others cost no request. A configuration being deleted has its drill's objects deleted at once: those in its
namespace would go with it anyway, but the Role a Repository in another namespace needed has no owner.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration, BackupConfigurationStatus
from stashlet.api.common import Condition, ConditionStatus
from stashlet.api.repository import Repository
from stashlet.api.timestamps import now_utc
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Conflict, Invalid, NotFound
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.conditions import EventSpec
from stashlet.operator.core.events import Events
from stashlet.operator.core.resources import Resources
from stashlet.operator.core.usage_policy import usage_allowed
from stashlet.operator.core.validation import needs_namespace_labels
from stashlet.operator.drills import cronjob as drill_job
from stashlet.operator.drills.spec import drill_request
from stashlet.operator.injection import rbac
from stashlet.operator.settings import OperatorSettings

log = logging.getLogger(__name__)

CONDITION_SCHEDULED = "RestoreDrillScheduled"
REASON_CREATED = "RestoreDrillCronJobCreated"
REASON_INVALID = "InvalidRestoreDrill"
REASON_REPOSITORY_NOT_FOUND = "RepositoryNotFound"
REASON_CRONJOB_FAILED = "RestoreDrillCronJobFailed"
REASON_USAGE_DENIED = "RepositoryUsageDenied"


class DrillReconciler:
    """Reconciles the drills of every configuration (it holds no per-object state)."""

    def __init__(self, api: ApiClient, settings: OperatorSettings, events: Events) -> None:
        """Use ``api`` (the operator's own identity), ``settings`` and ``events``."""
        self.settings = settings
        self.stash = StashClient(api)
        self.resources = Resources(api)
        self.events = events

    async def reconcile(self, namespace: str, name: str) -> None:
        """Bring configuration ``namespace/name``'s drill to what its annotations ask (module docstring)."""
        try:
            bc = await self.stash.get(BackupConfiguration, namespace, name)
        except NotFound:
            return  # its CronJob, account and Roles go with it (owner references)
        if bc.metadata.deletion_timestamp is not None:
            await self._remove(bc)  # a Role by a Repository elsewhere has no owner to go with
            return
        request = drill_request(bc.metadata.annotations)
        had = _condition(bc) is not None
        if not request.wanted:
            if had:
                await self._remove(bc)
                await self._set_condition(bc, None)
            return
        if request.spec is None:
            await self._remove(bc)
            message = f"BackupConfiguration {namespace}/{name}: " + "; ".join(request.problems)
            await self._set_condition(bc, (False, REASON_INVALID, message))
            return
        ref = bc.spec.repository
        repo_namespace = (ref.namespace if ref is not None else None) or namespace
        repo_name = ref.name if ref is not None else ""
        if not repo_name:
            await self._remove(bc)
            message = (
                f"BackupConfiguration {namespace}/{name}: a restore drill restores from spec.repository, "
                "which this configuration does not name (a VolumeSnapshotter configuration has no snapshots "
                "to restore)"
            )
            await self._set_condition(bc, (False, REASON_INVALID, message))
            return
        try:
            repository = await self.stash.get(Repository, repo_namespace, repo_name)
        except NotFound:
            await self._remove(bc)
            message = (
                f"BackupConfiguration {namespace}/{name}: the restore drill needs Repository "
                f"{repo_namespace}/{repo_name} (spec.repository), which does not exist"
            )
            await self._set_condition(bc, (False, REASON_REPOSITORY_NOT_FOUND, message))
            return
        labels = None
        if repo_namespace != namespace and needs_namespace_labels(repository):
            labels = await self.resources.namespace_labels(namespace)
        usage = usage_allowed(repository, namespace, labels)
        if not usage.allowed:  # no Role in the Repository's namespace for a drill it does not admit
            await self._remove(bc)
            await self._set_condition(bc, (False, REASON_USAGE_DENIED, usage.message))
            return
        for obj in drill_job.drill_rbac(bc, repository):
            await self.resources.ensure(obj, rbac.up_to_date, likely_new=not had)
        desired = drill_job.build_cronjob(bc, request.spec, repository, self.settings)
        where = f"{namespace}/{desired['metadata']['name']}"
        try:
            done = await self._write_cronjob(desired, likely_new=not had)
        except Invalid as exc:
            message = f"Failed to create restore drill CronJob {where}. Reason: {exc.message}"
            await self._set_condition(bc, (False, REASON_CRONJOB_FAILED, message))
            return
        if done is not None:
            log.info(
                f"restore drill cronjob {done}", extra={"object": f"{namespace}/{name}", "cronjob": where}
            )
        what = f" then runs {request.spec.image}" if request.spec.runs_command else ""
        message = (
            f"Restore drill CronJob {where} restores the latest snapshots of Repository "
            f"{repo_namespace}/{repo_name} on schedule {request.spec.schedule!r}{what}."
        )
        await self._set_condition(bc, (True, REASON_CREATED, message))

    async def _write_cronjob(self, desired: dict[str, Any], *, likely_new: bool) -> str | None:
        """Create the CronJob, or patch the one there when it was made from another spec (the operator may
        patch CronJobs, not update them); what was done (None: nothing)."""
        meta = desired["metadata"]
        if likely_new:
            with contextlib.suppress(Conflict):  # it exists after all: compared below
                await self.resources.create(desired)
                return "created"
        try:
            existing = await self.resources.get("CronJob", meta["namespace"], meta["name"])
        except NotFound:
            await self.resources.create(desired)
            return "created"
        if drill_job.cronjob_up_to_date(existing, desired):
            return None
        patch = drill_job.cronjob_patch(existing, desired)
        await self.resources.patch_cronjob(meta["namespace"], meta["name"], patch)
        return "updated"

    async def _remove(self, bc: BackupConfiguration) -> None:
        """Delete the drill's CronJob, Roles, RoleBindings and account, where they exist."""
        ref = bc.spec.repository
        namespace = bc.metadata.namespace or ""
        for obj in drill_job.made_for(bc, (ref.namespace if ref is not None else None) or namespace):
            if await self.resources.delete(obj.kind, obj.namespace, obj.name):
                log.info(
                    "restore drill object deleted",
                    extra={"object": f"{namespace}/{bc.metadata.name}", "kind": obj.kind, "name": obj.name},
                )

    async def _set_condition(self, bc: BackupConfiguration, wanted: tuple[bool, str, str] | None) -> None:
        """Set (or, for None, remove) the condition; an event when it changed."""
        namespace, name = bc.metadata.namespace or "", bc.metadata.name or ""
        changed: list[Condition] = []

        def mutate(current: BackupConfiguration) -> bool:
            status = current.status or BackupConfigurationStatus()
            conditions = list(status.conditions or [])
            old = next((c for c in conditions if c.type == CONDITION_SCHEDULED), None)
            changed.clear()
            if wanted is None:
                if old is None:
                    return False
                conditions.remove(old)
            else:
                ok, reason, message = wanted
                state = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
                if old is not None and (old.status, old.reason, old.message) == (state, reason, message):
                    return False
                kept = old is not None and old.status == state
                new = Condition(
                    type=CONDITION_SCHEDULED,
                    status=state,
                    reason=reason,
                    message=message,
                    last_transition_time=old.last_transition_time if old is not None and kept else now_utc(),
                )
                conditions = [new if c is old else c for c in conditions] if old else [*conditions, new]
                changed.append(new)
            status.conditions = conditions
            current.status = status
            return True

        updated = await self.stash.update_status(BackupConfiguration, namespace, name, mutate)
        for condition in changed:
            ok = condition.status == ConditionStatus.TRUE
            event = EventSpec(
                "Normal" if ok else "Warning",
                condition.reason or CONDITION_SCHEDULED,
                condition.message or "",
                names.COMPONENT_BACKUP_CONFIGURATION,
            )
            await self.events.emit(updated, event)


def _condition(bc: BackupConfiguration) -> Condition | None:
    conditions = bc.status.conditions if bc.status is not None else None
    return next((c for c in conditions or [] if c.type == CONDITION_SCHEDULED), None)
