"""``stash-init``'s own identity on the real control plane, with real tokens: the RestoreSession's account
``stashlet-restore-<rs>`` (its token from the token controller) against the workload's ``default``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.operator.injection.conftest import token_kubectl
from tests.operator.injection.test_rbac_cluster import account_token, can, secret_in
from tests.polling import eventually

from stashlet.api import names
from stashlet.localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def restore_session(namespace: str, name: str, workload: str, repository: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "repository": repository,
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload},
                "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
                "rules": [{"paths": ["/source/data"]}],
            },
        },
    }


async def injected(akubectl: Any, namespace: str, name: str) -> None:
    async def probe() -> bool:
        rs = await akubectl.get("restoresession", namespace, name) or {}
        conditions = (rs.get("status") or {}).get("conditions") or []
        return any(c["type"] == "StashInitContainerInjected" and c["status"] == "True" for c in conditions)

    await eventually(probe, timeout=30, what=f"stash-init injected for RestoreSession {namespace}/{name}")


async def test_restores_of_workloads_sharing_default_reach_only_their_own_session(
    operator: Any, akubectl: Any, make: Any, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Two RestoreSessions whose workloads both run as ``default``, each with its Repository and storage
    Secret in the namespace. ``stash-init`` alone mounts the session's token and storage Secret. With real
    tokens (the one the token controller made for ``stashlet-restore-a``, and one of ``default``): A's
    account reads its session, its workload and Repository, and writes its session's status; it cannot
    read B's session, Repository or Secret, its own Secret (mounted) or its own token Secret, nor write B's
    status; ``default`` reads no Secret and nothing of stashlet. Deleting A takes A's grants away."""
    for which in ("a", "b"):
        await akubectl("apply", "-f", "-", input_obj=secret_in(namespace, f"secret-{which}", f"pw-{which}"))
        repo = make.repository(name=f"repo-{which}", namespace=namespace, secret=f"secret-{which}")
        await akubectl("apply", "-f", "-", input_obj=repo)
        await akubectl(
            "apply", "-f", "-", input_obj=make.deployment(name=f"app-{which}", namespace=namespace)
        )
    await operator.start(namespace)
    for which in ("a", "b"):
        rs = restore_session(namespace, which, f"app-{which}", {"name": f"repo-{which}"})
        await akubectl("apply", "-f", "-", input_obj=rs)
    for which in ("a", "b"):
        await injected(akubectl, namespace, which)

    template = (await akubectl.get("deployment", namespace, "app-a"))["spec"]["template"]["spec"]
    assert "serviceAccountName" not in template  # the workload still runs as default
    init = next(c for c in template["initContainers"] if c["name"] == "stash-init")
    volumes = {v["name"]: v for v in template["volumes"]}
    assert {m["name"] for m in init["volumeMounts"]} >= {"stash-init-kube-token", "stash-init-storage-secret"}
    assert volumes["stash-init-kube-token"]["secret"]["secretName"] == "stashlet-restore-a"
    assert volumes["stash-init-storage-secret"]["secret"]["secretName"] == "secret-a"
    for container in template["containers"]:
        assert not {m["name"] for m in container.get("volumeMounts") or []} & set(volumes) - {"source-data"}
    binding = await akubectl.get("rolebinding", namespace, "stashlet-restore-a")
    assert binding is not None
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stashlet-restore-a", "namespace": namespace}
    ]

    agent = token_kubectl(
        control_plane,
        await account_token(akubectl, namespace, "stashlet-restore-a"),
        namespace,
        tmp_path / "a",
    )
    default = token_kubectl(
        control_plane,
        control_plane.kubectl("create", "token", "default", "-n", namespace).stdout.strip(),
        namespace,
        tmp_path / "default",
    )
    group = names.GROUP
    for what in (f"restoresessions.{group}/a", f"repositories.{group}/repo-a", "deployments.apps/app-a"):
        code, out = await agent.run("get", what, "-n", namespace, "-o", "name")
        assert code == 0, out
    for what in (
        f"restoresessions.{group}/b",
        f"repositories.{group}/repo-b",
        "deployments.apps/app-b",
        "secrets/secret-a",
        "secrets/secret-b",
        "secrets/stashlet-restore-a",
        "secrets/stashlet-restore-b",
        "secrets",
    ):
        code, out = await agent.run("get", what, "-n", namespace)
        assert code != 0, what
        assert "is forbidden" in out, out
    for what in (
        "secrets/secret-a",
        "secrets/secret-b",
        "secrets/stashlet-restore-a",
        "secrets",
        f"restoresessions.{group}/a",
        f"repositories.{group}/repo-a",
    ):
        code, out = await default.run("get", what, "-n", namespace)
        assert code != 0, what
        assert "is forbidden" in out, out

    # Status: A's own session is written (a read, then an update, as the agent does); B's is not.
    # The operator writes the same status meanwhile: a 409 is read again and retried, as the agent does.
    for name, allowed in (("a", True), ("b", False)):
        for _ in range(5):
            live = await akubectl.get("restoresession", namespace, name)
            assert live is not None
            code, out = await agent.run("replace", "--subresource=status", "-f", "-", stdin=json.dumps(live))
            if "the object has been modified" not in out:
                break
        assert (code == 0) == allowed, out
        if not allowed:
            assert "is forbidden" in out, out

    await akubectl("delete", "restoresession", "a", "-n", namespace, "--wait=true", "--timeout=30s")
    who = f"system:serviceaccount:{namespace}:stashlet-restore-a"
    assert not await can(akubectl, who, namespace, "get", f"repositories.{group}/repo-a")
    code, out = await agent.run("get", f"repositories.{group}/repo-a", "-n", namespace)
    assert code != 0, out


async def test_stash_init_reads_a_repository_of_another_namespace_and_its_secret_by_name(
    second_namespace: str, operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """A Repository in another namespace (its usagePolicy admitting every namespace): ``stash-init``'s
    account reads that Repository and its one Secret there by name, nothing else of that namespace; no
    storage Secret is mounted; the workload's account gets nothing, there or here."""
    repo_ns = second_namespace
    await akubectl("apply", "-f", "-", input_obj=make.seed_storage_secret(repo_ns))
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=make.repository(namespace=repo_ns, usagePolicy={"allowedNamespaces": {"from": "All"}}),
    )
    await akubectl("apply", "-f", "-", input_obj=make.deployment(namespace=namespace))
    await operator.start(namespace, repo_ns)
    rs = restore_session(namespace, "rs", "stash-demo", {"name": "gcs-repo", "namespace": repo_ns})
    await akubectl("apply", "-f", "-", input_obj=rs)
    await injected(akubectl, namespace, "rs")

    template = (await akubectl.get("deployment", namespace, "stash-demo"))["spec"]["template"]["spec"]
    assert "stash-init-storage-secret" not in {v["name"] for v in template["volumes"]}
    own = f"system:serviceaccount:{namespace}:stashlet-restore-rs"
    workload = f"system:serviceaccount:{namespace}:default"
    allowed = [
        (repo_ns, "get", f"repositories.{names.GROUP}/gcs-repo"),
        (repo_ns, "get", "secrets/gcs-secret"),
        (namespace, "get", f"restoresessions.{names.GROUP}/rs"),
        (namespace, "update", f"restoresessions.{names.GROUP}/rs", "--subresource=status"),
    ]
    for ns, verb, what, *extra in allowed:
        assert await can(akubectl, own, ns, verb, what, *extra), (ns, verb, what)
        assert not await can(akubectl, workload, ns, verb, what, *extra), (ns, verb, what)
    for ns, verb, what in [
        (repo_ns, "get", "secrets/another-secret"),
        (repo_ns, "list", "secrets"),
        (repo_ns, "get", f"repositories.{names.GROUP}/another-repo"),
        (namespace, "get", "secrets/gcs-secret"),
        (namespace, "get", f"restoresessions.{names.GROUP}/other"),
    ]:
        assert not await can(akubectl, own, ns, verb, what), (ns, verb, what)
