"""The access the operator grants, checked by the real API server's authorizer (``kubectl auth can-i``)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.cluster


async def can(akubectl: Any, who: str, namespace: str, verb: str, what: str, *extra: str) -> bool:
    out = await akubectl("auth", "can-i", verb, what, "-n", namespace, f"--as={who}", *extra, check=False)
    return bool(out.strip() == "yes")


async def test_sidecar_and_trigger_get_exactly_what_they_use_and_lose_it_on_deletion(
    second_namespace: str, operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """The workload's service account may read its configuration, work its sessions, take its Lease and read
    the one Repository and Secret in the Repository's namespace, nothing beside; the trigger may only read
    its configuration and create sessions. Deleting the configuration removes both grants, there too.
    """
    repo_ns = second_namespace
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(repo_ns))
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=make.repository(namespace=repo_ns, usagePolicy={"allowedNamespaces": {"from": "All"}}),
    )
    workload = make.deployment(namespace=namespace)
    workload["spec"]["template"]["spec"]["serviceAccountName"] = "app-sa"
    await akubectl("apply", "-f", "-", input_obj=workload)
    await operator.start(namespace, repo_ns)
    config = make.backup_configuration(
        namespace=namespace, repository={"name": "gcs-repo", "namespace": repo_ns}
    )
    await akubectl("apply", "-f", "-", input_obj=config)
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")

    agent = f"system:serviceaccount:{namespace}:app-sa"
    allowed = [
        (namespace, "get", "backupconfigurations.stash.appscode.com/pause-backup"),
        (namespace, "watch", "backupsessions.stash.appscode.com"),
        (namespace, "create", "backupsessions.stash.appscode.com"),
        (namespace, "update", "backupsessions.stash.appscode.com", "--subresource=status"),
        (namespace, "create", "events"),
        (namespace, "create", "leases.coordination.k8s.io"),
        (namespace, "update", "leases.coordination.k8s.io/lock-deployment-stash-demo-backup"),
        (namespace, "get", "pods"),
        (namespace, "get", "deployments.apps/stash-demo"),
        (repo_ns, "get", "repositories.stash.appscode.com/gcs-repo"),
        (repo_ns, "patch", "repositories.stash.appscode.com/gcs-repo", "--subresource=status"),
        (repo_ns, "get", "secrets/gcs-secret"),
    ]
    denied = [
        (namespace, "get", "backupconfigurations.stash.appscode.com/other"),
        (namespace, "delete", "backupsessions.stash.appscode.com"),
        (namespace, "update", "leases.coordination.k8s.io/some-other-lease"),
        (namespace, "get", "secrets/gcs-secret"),
        (namespace, "list", "secrets"),
        (namespace, "update", "deployments.apps/stash-demo"),
        (repo_ns, "get", "secrets/another-secret"),
        (repo_ns, "list", "secrets"),
        (repo_ns, "update", "repositories.stash.appscode.com/gcs-repo"),
        (repo_ns, "get", "repositories.stash.appscode.com/another-repo"),
    ]
    for ns, verb, what, *extra in allowed:
        assert await can(akubectl, agent, ns, verb, what, *extra), (ns, verb, what)
    for ns, verb, what, *extra in denied:
        assert not await can(akubectl, agent, ns, verb, what, *extra), (ns, verb, what)

    trigger = f"system:serviceaccount:{namespace}:stashlet-trigger"
    assert await can(
        akubectl, trigger, namespace, "get", "backupconfigurations.stash.appscode.com/pause-backup"
    )
    assert await can(akubectl, trigger, namespace, "create", "backupsessions.stash.appscode.com")
    assert await can(akubectl, trigger, namespace, "create", "events")
    for verb, what in [
        ("list", "backupconfigurations.stash.appscode.com"),
        ("update", "backupconfigurations.stash.appscode.com/pause-backup"),
        ("delete", "backupsessions.stash.appscode.com"),
        ("get", "secrets"),
    ]:
        assert not await can(akubectl, trigger, namespace, verb, what), (verb, what)

    await akubectl(
        "delete", "backupconfiguration", "pause-backup", "-n", namespace, "--wait=true", "--timeout=30s"
    )
    assert not await can(akubectl, agent, repo_ns, "get", "secrets/gcs-secret")
    assert not await can(
        akubectl, agent, namespace, "get", "backupconfigurations.stash.appscode.com/pause-backup"
    )
    assert not await can(akubectl, trigger, namespace, "create", "backupsessions.stash.appscode.com")
