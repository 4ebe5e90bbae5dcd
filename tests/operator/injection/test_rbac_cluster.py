"""The access the operator grants, checked by the real API server's authorizer (``kubectl auth can-i``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes_asyncio import client
from tests.operator.injection.conftest import token_kubectl
from tests.polling import eventually

from stashlet.api import agent_identity, names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.kube.custom import StashClient
from stashlet.kube.errors import Forbidden
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator.core.apiclient import call_json, new_api_client

pytestmark = pytest.mark.cluster


async def can(akubectl: Any, who: str, namespace: str, verb: str, what: str, *extra: str) -> bool:
    out = await akubectl("auth", "can-i", verb, what, "-n", namespace, f"--as={who}", *extra, check=False)
    return bool(out.strip() == "yes")


async def test_sidecar_and_trigger_get_exactly_what_they_use_and_lose_it_on_deletion(
    second_namespace: str, operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """The sidecar's own account ``stashlet-agent-<bc>`` may read its configuration, work its sessions,
    take its Lease and read the one Repository and Secret in the Repository's namespace, nothing beside;
    the workload's own account gets nothing; the trigger may only read its configuration and create
    sessions. Deleting the configuration removes every grant, there too; the account goes as garbage.
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

    agent = f"system:serviceaccount:{namespace}:stashlet-agent-pause-backup"
    workload_account = f"system:serviceaccount:{namespace}:app-sa"
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
        (repo_ns, "watch", "secrets/gcs-secret"),
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
        assert not await can(akubectl, workload_account, ns, verb, what, *extra), (ns, verb, what)
    for ns, verb, what, *extra in denied:
        assert not await can(akubectl, agent, ns, verb, what, *extra), (ns, verb, what)
    assert not await can(akubectl, agent, repo_ns, "list", "secrets")

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
    await akubectl.wait_gone("serviceaccount", namespace, "stashlet-agent-pause-backup")


def secret_in(namespace: str, name: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {
            "RESTIC_PASSWORD": password,
            "GOOGLE_PROJECT_ID": "p",
            "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": "{}",
        },
    }


def session(namespace: str, name: str, invoker: str) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"invoker": {"apiGroup": names.GROUP, "kind": "BackupConfiguration", "name": invoker}},
    }


async def account_token(akubectl: Any, namespace: str, secret: str) -> str:
    """The token the token controller wrote into Secret ``secret``, waited for."""

    async def filled() -> str:
        found = await akubectl.get("secret", namespace, secret)
        return base64.b64decode(((found or {}).get("data") or {}).get("token", "")).decode()

    token: str = await eventually(filled, what=f"the token controller to fill Secret {namespace}/{secret}")
    return token


async def test_workloads_sharing_default_reach_only_their_own_configuration(
    admission_policies: None,
    operator: Any,
    akubectl: Any,
    make: Any,
    namespace: str,
    control_plane: ControlPlane,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two configurations whose workloads both run as ``default``, each with its Repository and storage
    Secret in the namespace. With real tokens (the one the token controller made for ``stashlet-agent-a``,
    and one of ``default``): A's agent reads its configuration and Repository, creates its sessions and
    writes their status; it cannot read B's configuration, Repository or Secret, nor its own Secret (it is
    mounted), cannot create B's sessions or write a B session's status (the admission policy refuses,
    naming both); ``default`` reads no Secret and nothing of stashlet. The agent's own API client (token
    folder) gets the same answers. Both configurations are Ready and warn that their workloads run as
    ``default`` (condition and Warning event)."""
    for which in ("a", "b"):
        await akubectl("apply", "-f", "-", input_obj=secret_in(namespace, f"secret-{which}", f"pw-{which}"))
        repo = make.repository(name=f"repo-{which}", namespace=namespace, secret=f"secret-{which}")
        await akubectl("apply", "-f", "-", input_obj=repo)
        await akubectl(
            "apply", "-f", "-", input_obj=make.deployment(name=f"app-{which}", namespace=namespace)
        )
    await operator.start(namespace)
    for which in ("a", "b"):
        config = make.backup_configuration(
            name=which, namespace=namespace, target=f"app-{which}", repository={"name": f"repo-{which}"}
        )
        await akubectl("apply", "-f", "-", input_obj=config)
    for which in ("a", "b"):
        ready = await akubectl.wait_phase(namespace, which, "Ready")
        warned = [c for c in ready["status"]["conditions"] if c["type"] == "DedicatedServiceAccount"]
        assert [(c["status"], c["reason"]) for c in warned] == [("False", "DefaultServiceAccount")]
        assert (
            f"Deployment {namespace}/app-{which} runs as ServiceAccount {namespace}/default"
            in warned[0]["message"]
        )
        await akubectl.event(
            namespace,
            which,
            lambda e: e["reason"] == "DefaultServiceAccount" and e["type"] == "Warning",
            what=f"the DefaultServiceAccount warning on {which}",
        )
    template = (await akubectl.get("deployment", namespace, "app-a"))["spec"]["template"]["spec"]
    assert "serviceAccountName" not in template  # the workload still runs as default
    sidecar = next(c for c in template["containers"] if c["name"] == "stash")
    assert {m["name"] for m in sidecar["volumeMounts"]} >= {"stash-kube-token", "stash-storage-secret"}

    agent = token_kubectl(
        control_plane, await account_token(akubectl, namespace, "stashlet-agent-a"), namespace, tmp_path / "a"
    )
    default = token_kubectl(
        control_plane,
        control_plane.kubectl("create", "token", "default", "-n", namespace).stdout.strip(),
        namespace,
        tmp_path / "default",
    )
    group = names.GROUP
    for what in (f"backupconfigurations.{group}/a", f"repositories.{group}/repo-a"):
        code, out = await agent.run("get", what, "-n", namespace, "-o", "name")
        assert code == 0, out
    for what in (
        f"backupconfigurations.{group}/b",
        f"repositories.{group}/repo-b",
        "secrets/secret-b",
        "secrets/secret-a",
        "secrets/stashlet-agent-a",
    ):
        code, out = await agent.run("get", what, "-n", namespace)
        assert code != 0, what
        assert "is forbidden" in out, out
    for what in ("secrets/secret-a", "secrets/secret-b", f"backupconfigurations.{group}/a", "secrets"):
        code, out = await default.run("get", what, "-n", namespace)
        assert code != 0, what
        assert "is forbidden" in out, out
    code, out = await default.run(
        "create", "-f", "-", stdin=json.dumps(session(namespace, "by-default", "a"))
    )
    assert code != 0
    assert "is forbidden" in out, out

    # A's agent creates A's sessions; B's are refused by the admission policy, naming the account and B.
    code, out = await agent.run("create", "-f", "-", stdin=json.dumps(session(namespace, "a-1", "a")))
    assert code == 0, out

    async def refused_for_b() -> str | None:
        _, out = await agent.run("create", "-f", "-", stdin=json.dumps(session(namespace, "b-forged", "b")))
        assert "b-forged created" not in out, "the admission policy let A's agent create B's session"
        return out if "denied request" in out else None

    refusal = await eventually(refused_for_b, what="the admission policy to refuse A's agent a session of B")
    assert (
        f"ServiceAccount {namespace}/stashlet-agent-a may write only the BackupSessions of its own "
        f"BackupConfiguration, and BackupSession {namespace}/b-forged is BackupConfiguration b's"
    ) in refusal

    # Status: A's own session is written; a session of B (made by the admin) is not, whatever is written.
    await akubectl("apply", "-f", "-", input_obj=session(namespace, "b-1", "b"))
    forged = json.dumps({"status": {"phase": "Succeeded"}})
    for name, allowed in (("a-1", True), ("b-1", False)):
        code, out = await agent.run(
            "patch",
            f"backupsessions.{group}",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            forged,
        )
        assert (code == 0) == allowed, out
        if not allowed:
            assert "denied request" in out, out
            assert f"BackupSession {namespace}/b-1 is BackupConfiguration b's" in out, out
    b_phase = ((await akubectl.get("backupsession", namespace, "b-1")) or {}).get("status", {}).get("phase")
    assert b_phase != "Succeeded"

    # The agent's own API client, as the sidecar builds it from the mounted token folder.
    token_dir = tmp_path / "kube-token"
    token_dir.mkdir()
    (token_dir / "token").write_text(await account_token(akubectl, namespace, "stashlet-agent-a"))
    (token_dir / "ca.crt").write_bytes(control_plane.pki.ca_cert.read_bytes())
    assert control_plane.state is not None
    server = urlsplit(control_plane.state.server)
    monkeypatch.setenv(agent_identity.ENV_KUBE_TOKEN_DIR, str(token_dir))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", server.hostname or "")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    api = await new_api_client()
    try:
        stash = StashClient(api)
        assert (await stash.get(BackupConfiguration, namespace, "a")).metadata.name == "a"
        with pytest.raises(Forbidden):
            await stash.get(BackupConfiguration, namespace, "b")
        with pytest.raises(Forbidden):
            await call_json(client.CoreV1Api(api).read_namespaced_secret, "secret-a", namespace)
    finally:
        await api.close()
