"""What one host backs up for a BackupSession (the target, its number of hosts, paths and restic options),
and which snapshots the target's retention may forget."""

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


def retention_args(policy: RetentionPolicyLike, plan: BackupPlan, hosts: Sequence[str]) -> list[str]:
    """``restic forget`` arguments applying ``policy`` to this target's own snapshots only: those of its
    ``hosts`` (never empty: refused) holding its paths, grouped by host and paths."""
    return forget_args(policy, hosts=hosts, paths=retention_paths(plan.paths))
