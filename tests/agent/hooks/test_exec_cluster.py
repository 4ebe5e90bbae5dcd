"""Hooks against a real pod on the local cluster's real node: ``exec`` through ``pods/exec`` as the agent's
own service account (with exactly the Role the operator grants for a RestoreSession with an exec hook),
and the HTTP and TCP handlers aimed at the pod's IP and a named port."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.polling import eventually, in_thread

from stashlet.agent.hooks import HookData, HookKind, PodRef, restore_hooks, run_hook
from stashlet.agent.hooks.data import InvokerRef, SessionStatus, TargetInfo
from stashlet.api import agent_identity
from stashlet.api.restoresession import RestoreSession
from stashlet.kube.client import api_client
from stashlet.localcluster import images
from stashlet.localcluster.cluster import LocalCluster
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection.rbac import RepositoryAccess
from stashlet.operator.injection.restore_rbac import restore_rbac

pytestmark = pytest.mark.cluster

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
POD = "app-0"
ACCOUNT = agent_identity.restore_account("rs-hooks")
"""The session's own account, stash-init's identity (the operator binds its Role to it alone)."""
DATA = HookData(
    name="rs-hooks",
    namespace="demo",
    invoker=InvokerRef("RestoreSession", "rs-hooks"),
    target=TargetInfo("apps/v1", "Deployment", "app"),
    status=SessionStatus("Failed", "4s", "restic said no"),
)


def pod(namespace: str) -> dict[str, Any]:
    """Two busybox containers: ``app`` sleeps, ``side`` serves HTTP on port ``web`` (8080)."""
    busybox = {"image": images.BUSYBOX_IMAGE, "imagePullPolicy": "Never"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": namespace, "labels": {"app": "app"}},
        "spec": {
            "serviceAccountName": ACCOUNT,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "app", **busybox, "command": ["sleep", "3600"]},
                {
                    "name": "side",
                    **busybox,
                    "command": [
                        "sh",
                        "-c",
                        "mkdir -p /tmp/www && echo hi > /tmp/www/index.html && "
                        "exec httpd -f -p 8080 -h /tmp/www",
                    ],
                    "ports": [{"name": "web", "containerPort": 8080}],
                },
            ],
        },
    }


def restore_session(namespace: str, hooks: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "repository": {"name": "repo"},
        "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}},
    }
    if hooks is not None:
        spec["hooks"] = hooks
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "rs-hooks", "namespace": namespace},
        "spec": spec,
    }


def apply(kubectl: Kubectl, *objects: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input_obj=list(objects))


def grant(kubectl: Kubectl, namespace: str, hooks: dict[str, Any] | None) -> None:
    """The RestoreSession (so the Role's owner exists) and the Role the operator builds for it."""
    apply(kubectl, restore_session(namespace, hooks))
    live = json.loads(kubectl("get", "restoresession", "rs-hooks", "-n", namespace, "-o", "json").stdout)
    rs = RestoreSession.from_dict(live)
    objects = restore_rbac(
        rs,
        WORKLOAD_KINDS["Deployment"],
        "app",
        repository=RepositoryAccess(namespace, "repo", "secret"),
    )
    apply(kubectl, *objects)


async def can(kubectl: Kubectl, namespace: str, verb: str, *what: str) -> bool:
    """What the API server's authorizer says the agent's service account may do."""
    who = f"--as=system:serviceaccount:{namespace}:{ACCOUNT}"
    out = await in_thread(lambda: kubectl("auth", "can-i", verb, *what, "-n", namespace, who, check=False))()
    return bool(out.stdout.strip() == "yes")


async def can_exec(kubectl: Kubectl, namespace: str) -> bool:
    """Both verbs a WebSocket exec is authorized as."""
    return all(
        [await can(kubectl, namespace, verb, "pods", "--subresource=exec") for verb in ("get", "create")]
    )


async def admin_exec(kubectl: Kubectl, namespace: str, container: str, *command: str) -> str:
    done = await in_thread(
        lambda: kubectl("exec", POD, "-n", namespace, "-c", container, "--", *command, check=False)
    )()
    return str(done.stdout)


@pytest.fixture
async def running(local_cluster: LocalCluster, kubectl: Kubectl, namespace: str) -> AsyncIterator[str]:
    """Pod ``app-0`` running (both containers ready) on the real node, as ServiceAccount
    ``stashlet-restore-rs-hooks``."""
    if local_cluster.node is None:
        pytest.fail(f"exec hooks need a real node: {local_cluster.node_unavailable}")
    kubectl("create", "serviceaccount", ACCOUNT, "-n", namespace)
    apply(kubectl, pod(namespace))

    def ready() -> bool:
        obj = json.loads(kubectl("get", "pod", POD, "-n", namespace, "-o", "json").stdout)
        statuses = obj.get("status", {}).get("containerStatuses") or []
        return len(statuses) == 2 and all(s.get("ready") for s in statuses)

    await eventually(in_thread(ready), what=f"pod {namespace}/{POD} running", timeout=120, interval=0.5)
    yield namespace
    kubectl("delete", "pod", POD, "-n", namespace, "--wait=false", check=False)


@pytest.fixture
def agent_kubeconfig(service_account_kubeconfig: Callable[[str, str], Path], running: str) -> Path:
    """A kubeconfig holding a token of the session's own ServiceAccount: stash-init's identity."""
    return service_account_kubeconfig(running, ACCOUNT)


def hook(kind: str, action: dict[str, Any], **extra: Any) -> Any:
    hooks = restore_hooks({kind: {**action, **extra}})
    return hooks.pre if kind == "preRestore" else hooks.post


async def test_exec_runs_in_the_container_only_with_the_granted_right(
    running: str, kubectl: Kubectl, agent_kubeconfig: Path
) -> None:
    """Without an exec hook the operator's Role has no pods/exec and the exec is refused (403); with
    one, the same service account runs the rendered command in the pod's first container by default or
    in ``containerName``; a command exiting 3 fails with its exit code and stderr (masked of the
    command's arguments); a missing container or binary fails saying so."""
    namespace = running
    pod_ref = PodRef(namespace, POD)
    write = hook(
        "preRestore",
        {
            "exec": {
                "command": ["sh", "-c", "echo '{{ .Name }} {{ .Status.Phase }}' > /tmp/hook-out; echo done"]
            }
        },
    )
    grant(kubectl, namespace, hooks={"preRestore": {"httpGet": {"port": 80}}})
    await eventually(lambda: can(kubectl, namespace, "get", "pods"), what="the Role in force", timeout=30)
    assert not await can_exec(kubectl, namespace)

    async with api_client(str(agent_kubeconfig)) as api:
        refused = await run_hook(HookKind.PRE_RESTORE, write, pod_ref, DATA, api=api)
        assert not refused.succeeded
        assert refused.message == (
            "exec: the API server refused the exec: HTTP 403 "
            "(forbidden: the agent's service account needs get and create on pods/exec)"
        )

        grant(kubectl, namespace, hooks={"postRestore": {"exec": {"command": ["true"]}}})
        await eventually(lambda: can_exec(kubectl, namespace), what="pods/exec granted", timeout=30)

        ran = await run_hook(HookKind.PRE_RESTORE, write, pod_ref, DATA, api=api)
        assert (ran.succeeded, ran.message) == (
            True,
            f"the command in container app of pod {namespace}/{POD} exited with code 0",
        )
        assert await admin_exec(kubectl, namespace, "app", "cat", "/tmp/hook-out") == "rs-hooks Failed\n"
        assert await admin_exec(kubectl, namespace, "side", "cat", "/tmp/hook-out") == ""

        in_side = hook(
            "postRestore",
            {"exec": {"command": ["sh", "-c", "touch /tmp/side-was-here"]}},
            containerName="side",
        )
        assert (await run_hook(HookKind.POST_RESTORE, in_side, pod_ref, DATA, api=api)).succeeded
        assert "side-was-here" in await admin_exec(kubectl, namespace, "side", "ls", "/tmp")

        failing = hook(
            "preRestore", {"exec": {"command": ["sh", "-c", "echo boom-s3cr3t-arg >&2; echo out; exit 3"]}}
        )
        failed = await run_hook(HookKind.PRE_RESTORE, failing, pod_ref, DATA, api=api)
        assert not failed.succeeded
        assert failed.message == (
            f"exec: the command in container app of pod {namespace}/{POD} exited with code 3: boom-s3cr3t-arg"
        )

        no_binary = hook("preRestore", {"exec": {"command": ["/no/such/binary"]}})
        missing = await run_hook(HookKind.PRE_RESTORE, no_binary, pod_ref, DATA, api=api)
        assert not missing.succeeded
        assert "no such file or directory" in missing.message.lower(), missing.message

        elsewhere = hook("preRestore", {"exec": {"command": ["true"]}}, containerName="db")
        absent = await run_hook(HookKind.PRE_RESTORE, elsewhere, pod_ref, DATA, api=api)
        assert (
            absent.message
            == f"exec: pod {namespace}/{POD} has no container 'db' (containerName; it has: app, side)"
        )

        slow = hook("preRestore", {"exec": {"command": ["sleep", "30"]}})
        timed_out = await run_hook(HookKind.PRE_RESTORE, slow, pod_ref, DATA, api=api, timeout=1)
        assert timed_out.message == "exec: did not finish within 1s"


async def test_http_and_tcp_without_host_go_to_the_pod_ip_and_named_port(
    running: str, kubectl: Kubectl, agent_kubeconfig: Path
) -> None:
    """httpGet with containerName and port ``web`` and no host reaches the pod's IP on 8080 (served by
    the side container); tcpSocket the same; a port name the container lacks fails naming it."""
    namespace = running
    pod_ref = PodRef(namespace, POD)
    grant(kubectl, namespace, hooks=None)
    await eventually(lambda: can(kubectl, namespace, "get", "pods"), what="the Role in force", timeout=30)
    live = json.loads(kubectl("get", "pod", POD, "-n", namespace, "-o", "json").stdout)
    core_ip = live["status"]["podIP"]
    async with api_client(str(agent_kubeconfig)) as api:
        get = hook("preRestore", {"httpGet": {"port": "web", "path": "/index.html"}}, containerName="side")
        tcp = hook("postRestore", {"tcpSocket": {"port": "web"}}, containerName="side")
        wrong = hook("preRestore", {"tcpSocket": {"port": "grpc"}}, containerName="side")
        unnamed = hook("preRestore", {"tcpSocket": {"port": "web"}})

        got = await run_hook(HookKind.PRE_RESTORE, get, pod_ref, DATA, api=api)
        connected = await run_hook(HookKind.POST_RESTORE, tcp, pod_ref, DATA, api=api)
        no_port = await run_hook(HookKind.PRE_RESTORE, wrong, pod_ref, DATA, api=api)
        no_container = await run_hook(HookKind.PRE_RESTORE, unnamed, pod_ref, DATA, api=api)

    assert (got.succeeded, got.message) == (True, f"GET http://{core_ip}:8080: HTTP status 200")
    assert (connected.succeeded, connected.message) == (True, f"tcp {core_ip}:8080: connected")
    assert no_port.message == f"tcpSocket: container 'side' of pod {namespace}/{POD} has no port named 'grpc'"
    assert no_container.message.startswith("tcpSocket: port 'web' is a name: set the hook's containerName")
