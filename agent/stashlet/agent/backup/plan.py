"""What one host backs up for a BackupSession (the target, its number of hosts, paths and restic options),
and which snapshots the target's retention may forget.

As in Stash, each of the target's paths is backed up by its own ``restic backup`` and is its own
snapshot (host, one path): its own restic group, for the incremental chain (restic's parent is the
latest snapshot of the same host and path) and for retention (``forget`` groups by host and paths)."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stashlet.agent.context import PreparationError
from stashlet.agent.hosts import total_hosts
from stashlet.agent.restic.retention import RetentionPolicyLike, forget_args
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import TargetRef


@dataclass(frozen=True)
class BackupPlan:
    """What one host backs up for a session: the target, its number of hosts, paths and restic options."""

    ref: TargetRef
    total_hosts: int
    paths: list[str]
    excludes: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


def plan_from_config(config: BackupConfiguration, workload: dict[str, Any]) -> BackupPlan:
    """The plan of a workload backup (sidecar): everything from ``spec.target``."""
    target = config.spec.target
    if target is None or target.ref is None:
        name = f"{config.metadata.namespace}/{config.metadata.name}"
        raise PreparationError(
            f"BackupConfiguration {name}: spec.target.ref is not set", reason="TargetNotFound"
        )
    ref = TargetRef(api_version=target.ref.api_version, kind=target.ref.kind, name=target.ref.name)
    return BackupPlan(
        ref=ref,
        total_hosts=total_hosts(ref.kind or "", workload, target.replicas),
        paths=list(target.paths or []),
        excludes=list(target.exclude or []),
        args=list(target.args or []),
    )


def retention_paths(paths: Sequence[str]) -> list[str]:
    """The target's paths as restic records them in a snapshot (cleaned), for ``forget --path``: restic
    compares them as strings, so ``/data/`` would match no snapshot of ``/data``."""
    return [posixpath.normpath(p) for p in paths]


def target_paths(plan: BackupPlan) -> list[str]:
    """The paths the host backs up, one ``restic backup`` (one snapshot) each, in the target's order: as
    restic records them (cleaned), each once."""
    return list(dict.fromkeys(retention_paths(plan.paths)))


def retention_args(
    policy: RetentionPolicyLike, path: str, hosts: Sequence[str], *, prune: bool | None = None
) -> list[str]:
    """``restic forget`` arguments applying ``policy`` to the snapshots of one of the target's paths:
    those of its ``hosts`` (never empty: refused) holding ``path``, grouped by host and paths.

    Each path is its own snapshot (one ``restic backup`` per path, as Stash runs it), and restic's
    ``--path`` filters are all required of a snapshot, so a target's retention is one ``forget`` per
    path; ``prune`` (None: the policy's) lets the caller prune once, with the last."""
    return forget_args(policy, hosts=hosts, paths=retention_paths([path]), prune=prune)
