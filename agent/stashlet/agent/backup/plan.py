"""What one host backs up for a BackupSession: the target, its number of hosts, paths and restic options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stashlet.agent.context import PreparationError
from stashlet.agent.hosts import total_hosts
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
