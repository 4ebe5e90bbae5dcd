"""What a hook's templates read (Stash's session summary), and whether a post hook runs: pure.

Stash renders hook templates over a ``v1beta1.Summary``:

- ``.Name``, ``.Namespace``: the BackupSession or RestoreSession;
- ``.Invoker.APIGroup``, ``.Invoker.Kind``, ``.Invoker.Name``: the BackupConfiguration or RestoreSession;
- ``.Target.APIVersion``, ``.Target.Kind``, ``.Target.Name``, ``.Target.Namespace``: the target;
- ``.Status.Phase`` (``Succeeded`` or ``Failed``), ``.Status.Duration`` (time since the session was
  created, in whole seconds as Go prints a duration), ``.Status.Error`` (why it failed);
- ``.RetryLeft``: retries left for a BackupSession.

Stash's guide spells two of them ``.Invoker.ApiVersion`` and ``.Target.ApiVersion``; both are accepted
too (Stash's own renderer knows neither). ``toJson`` writes the summary with its JSON names (``name``,
``status.phase``, ...).

A post hook's ``executionPolicy`` decides from ``.Status.Phase`` (and ``.RetryLeft``) whether it runs:
``Always``; ``OnSuccess`` when the phase is ``Succeeded``; ``OnFailure`` when it is ``Failed``;
``OnFinalRetryFailure`` when it is ``Failed`` with no retry left.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from stashlet.agent.hooks.gofuncs import GoStruct
from stashlet.api import names
from stashlet.api.backupsession import BackupSession
from stashlet.api.common import TargetRef
from stashlet.api.durations import format_whole_seconds
from stashlet.api.hooks import ExecutionPolicy, HookKind
from stashlet.api.restoresession import RestoreSession

PHASE_SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"


@dataclass(frozen=True)
class InvokerRef:
    """The object whose session this is (Stash: ``TypedLocalObjectReference``)."""

    kind: str
    name: str
    api_group: str = names.GROUP


@dataclass(frozen=True)
class TargetInfo:
    """The backup or restore target (Stash: ``TargetRef``)."""

    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""

    @classmethod
    def of(cls, ref: TargetRef | None) -> TargetInfo:
        """The target a session's ``target.ref`` names (empty when it names none)."""
        if ref is None:
            return cls()
        return cls(ref.api_version or "", ref.kind or "", ref.name or "", ref.namespace or "")


@dataclass(frozen=True)
class SessionStatus:
    """Where the session stands, as a hook sees it."""

    phase: str
    duration: str = ""
    error: str = ""


@dataclass(frozen=True)
class HookData:
    """Stash's summary of a session: the data a hook's templates read."""

    name: str
    namespace: str
    invoker: InvokerRef
    target: TargetInfo
    status: SessionStatus
    retry_left: int = 0

    def template_root(self) -> GoStruct:
        """The summary as the Go struct the templates evaluate (``.Status.Phase`` ...)."""
        invoker = GoStruct(
            "v1.TypedLocalObjectReference",
            {"APIGroup": self.invoker.api_group, "Kind": self.invoker.kind, "Name": self.invoker.name},
            json_names={"APIGroup": "apiGroup", "Kind": "kind", "Name": "name"},
            extras={"ApiVersion": f"{self.invoker.api_group}/{names.V1BETA1}"},
        )
        target = GoStruct(
            "v1beta1.TargetRef",
            {
                "APIVersion": self.target.api_version,
                "Kind": self.target.kind,
                "Name": self.target.name,
                "Namespace": self.target.namespace,
            },
            json_names={"APIVersion": "apiVersion", "Kind": "kind", "Name": "name", "Namespace": "namespace"},
            omit_empty=frozenset({"APIVersion", "Kind", "Name", "Namespace"}),
            extras={"ApiVersion": self.target.api_version},
        )
        status = GoStruct(
            "v1beta1.TargetStatus",
            {"Phase": self.status.phase, "Duration": self.status.duration, "Error": self.status.error},
            json_names={"Phase": "phase", "Duration": "duration", "Error": "error"},
            omit_empty=frozenset({"Phase", "Duration", "Error"}),
        )
        return GoStruct(
            "*v1beta1.Summary",
            {
                "Name": self.name,
                "Namespace": self.namespace,
                "Invoker": invoker,
                "Target": target,
                "Status": status,
                "RetryLeft": self.retry_left,
            },
            json_names={
                "Name": "name",
                "Namespace": "namespace",
                "Invoker": "invoker",
                "Target": "target",
                "Status": "status",
                "RetryLeft": "retryLeft",
            },
            omit_empty=frozenset({"Name", "Namespace", "RetryLeft"}),
        )


def skip_reason(kind: HookKind, policy: ExecutionPolicy, data: HookData) -> str | None:
    """None when ``policy`` lets the hook run for this outcome; else Stash's words for the skip."""
    phase = data.status.phase
    runs = (
        policy == ExecutionPolicy.ALWAYS
        or (policy == ExecutionPolicy.ON_SUCCESS and phase == PHASE_SUCCEEDED)
        or (policy == ExecutionPolicy.ON_FAILURE and phase == PHASE_FAILED)
        or (
            policy == ExecutionPolicy.ON_FINAL_RETRY_FAILURE
            and phase == PHASE_FAILED
            and data.retry_left == 0
        )
    )
    if runs:
        return None
    return f'Skipping executing {kind}. Reason: executionPolicy is "{policy}" but phase is "{phase}".'


def _since(created: dt.datetime | None, now: dt.datetime) -> str:
    return format_whole_seconds((now - created).total_seconds()) if created is not None else ""


def restore_data(session: RestoreSession, *, phase: str, error: str = "", now: dt.datetime) -> HookData:
    """The summary of a RestoreSession whose outcome (so far) is ``phase`` with ``error``."""
    name = session.metadata.name or ""
    return HookData(
        name=name,
        namespace=session.metadata.namespace or "",
        invoker=InvokerRef(names.KIND_RESTORE_SESSION, name),
        target=TargetInfo.of(session.spec.target.ref if session.spec.target else None),
        status=SessionStatus(phase, _since(session.metadata.creation_timestamp, now), error),
    )


def backup_data(
    session: BackupSession, target: TargetRef | None, *, phase: str, error: str = "", now: dt.datetime
) -> HookData:
    """The summary of a BackupSession's ``target`` whose outcome (so far) is ``phase`` with ``error``."""
    invoker = session.spec.invoker
    return HookData(
        name=session.metadata.name or "",
        namespace=session.metadata.namespace or "",
        invoker=InvokerRef(invoker.kind, invoker.name, invoker.api_group or names.GROUP),
        target=TargetInfo.of(target),
        status=SessionStatus(phase, _since(session.metadata.creation_timestamp, now), error),
        retry_left=session.spec.retry_left or 0,
    )
