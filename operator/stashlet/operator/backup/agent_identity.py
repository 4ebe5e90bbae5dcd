"""The sidecar's own identity, made before the sidecar is injected, and the word on a workload that runs as
its namespace's ``default`` account: async.

What the identity is and why: :mod:`stashlet.operator.injection.rbac` (module docstring). The objects are
pure there (:func:`~stashlet.operator.injection.rbac.agent_identity`); this writes them.
"""

from __future__ import annotations

import logging
from typing import Any

from stashlet.api import agent_identity as identity
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.operator.core import workloads
from stashlet.operator.core.conditions import ConditionUpdate
from stashlet.operator.core.resources import Resources
from stashlet.operator.injection import rbac

log = logging.getLogger(__name__)


def account_condition(bc: BackupConfiguration, kind: str, workload: dict[str, Any]) -> ConditionUpdate:
    """``DedicatedServiceAccount`` False (reason ``DefaultServiceAccount``) when the target's pod template
    names no service account or ``default``, else True.

    Not one Ready waits for: a workload running as ``default`` is backed up all the same (the agent has
    its own account); the condition and its Warning event say that every pod of the namespace without an
    account of its own shares whatever ``default`` is granted."""
    namespace = bc.metadata.namespace or ""
    target = workloads.describe(kind, namespace, workload["metadata"]["name"])
    account = workloads.service_account(workload)
    type_ = ConditionType.DEDICATED_SERVICE_ACCOUNT
    if account == "default":
        message = (
            f"{target} runs as ServiceAccount {namespace}/default "
            "(spec.template.spec.serviceAccountName): every pod of the namespace that names no account "
            "shares it and whatever it is granted. The stash sidecar does not use it (it runs as "
            f"{namespace}/{rbac.agent_account(bc)}); give the workload an account of its own."
        )
        return ConditionUpdate.false(type_, ConditionReason.DEFAULT_SERVICE_ACCOUNT, message)
    message = f"{target} runs as ServiceAccount {namespace}/{account}."
    return ConditionUpdate.true(type_, ConditionReason.OWN_SERVICE_ACCOUNT, message)


def name_problem(bc: BackupConfiguration) -> str | None:
    """Why ``bc``'s name cannot carry the sidecar's account (too long), or None."""
    longest = identity.longest_configuration_name()
    if len(bc.metadata.name or "") <= longest:
        return None
    return (
        f"metadata.name: BackupConfiguration {bc.metadata.namespace}/{bc.metadata.name} is longer than "
        f"{longest} characters, so the stash sidecar's ServiceAccount {identity.AGENT_ACCOUNT_PREFIX}<name> "
        "cannot be made"
    )


class AgentIdentities:
    """Ensures the sidecar's ServiceAccount and token Secret of BackupConfigurations."""

    def __init__(self, resources: Resources) -> None:
        """Write through ``resources``."""
        self.resources = resources

    async def ensure(self, bc: BackupConfiguration, *, likely_new: bool = False) -> str | None:
        """Make ``bc``'s agent account and its token Secret where missing; a problem naming the Secret
        when one of that name exists and is not that account's token (it is never overwritten).
        ``likely_new``: created straight away (:meth:`~stashlet.operator.core.resources.Resources.ensure`)."""
        account, token = rbac.agent_identity(bc)
        whose = "the stash sidecar's"
        return await self.resources.ensure_identity(
            account, token, rbac.up_to_date, whose, likely_new=likely_new
        )
