"""The operator's settings: one frozen object, built from flags and environment by the CLI, passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stashlet.api import names

DEFAULT_AGENT_IMAGE = "stashlet/agent:0.1.0"
DEFAULT_OPERATOR_IMAGE = "stashlet/operator:0.1.0"
DEFAULT_TRIGGER_SERVICE_ACCOUNT = "stashlet-trigger"
DEFAULT_KUBEDUMP_CLUSTER_ROLE = "stashlet-kubedump"
DEFAULT_JOB_TTL_SECONDS = 600
DEFAULT_PICKUP_DEADLINE_SECONDS = 300.0
DEFAULT_WORKERS = 16
"""Objects reconciled at once (the chart's ``operator.workers`` says the same). A reconcile mostly waits on
its API requests, so more workers than cores keep the API server busy."""


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator needs to know that is not in the objects it reconciles.

    ``namespaces`` empty means every namespace. ``operator_image`` is the image the trigger CronJob runs
    (``stashlet-operator trigger``); ``agent_image`` the sidecar's. ``workers`` bounds how many objects are
    reconciled at once (one object is never reconciled twice at the same time).
    ``kubedump_cluster_role`` is the read-only ClusterRole a kubedump Job's service account is bound to
    (made by the Helm chart, never by the operator); ``job_ttl_seconds`` how long a finished backup Job
    stays before it is deleted (``ttlSecondsAfterFinished``). ``agent_resources`` are the default
    ``resources`` of every agent container it writes (sidecar, ``stash-init``, backup Job) where the
    object's ``runtimeSettings.container.resources`` sets none. ``pickup_deadline_seconds`` is how long
    a BackupSession may wait for an agent to take it up before the operator ends it ``Failed`` saying why
    (a configuration's annotation ``stash.appscode.com/pickup-deadline`` overrides it).
    """

    namespaces: tuple[str, ...] = ()
    agent_image: str = DEFAULT_AGENT_IMAGE
    operator_image: str = DEFAULT_OPERATOR_IMAGE
    pushgateway_url: str | None = None
    status_port: int = names.DEFAULT_STATUS_PORT
    agent_log_level: str = "info"
    trigger_service_account: str = DEFAULT_TRIGGER_SERVICE_ACCOUNT
    image_pull_policy: str = "IfNotPresent"
    workers: int = DEFAULT_WORKERS
    retry_base_delay: float = 0.5
    retry_max_delay: float = 60.0
    watch_timeout_seconds: int = 300
    kubedump_cluster_role: str = DEFAULT_KUBEDUMP_CLUSTER_ROLE
    job_ttl_seconds: int = DEFAULT_JOB_TTL_SECONDS
    agent_resources: Mapping[str, Any] | None = None
    pickup_deadline_seconds: float = DEFAULT_PICKUP_DEADLINE_SECONDS

    def watches_all_namespaces(self) -> bool:
        """True when no namespace list was configured."""
        return not self.namespaces

    def watches(self, namespace: str | None) -> bool:
        """True when objects in ``namespace`` are this operator's business."""
        return self.watches_all_namespaces() or namespace in self.namespaces
