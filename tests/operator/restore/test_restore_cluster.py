"""RestoreSessions on the real control plane: validation with named conditions and events, nothing
injected until the input is right, ``stash-init`` into each workload kind, removal on deletion."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.polling import eventually

pytestmark = pytest.mark.cluster

RS = "deployment-restore"


def restore_session(namespace: str, kind: str = "Deployment", **spec: Any) -> dict[str, Any]:
    """Seed 004's RestoreSession for ``stash-demo``; ``spec`` overrides or adds fields."""
    body: dict[str, Any] = {
        "repository": {"name": "gcs-repo"},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": kind, "name": "stash-demo"},
            "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
            "rules": [{"paths": ["/source/data"]}],
        },
    }
    body.update(spec)
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": RS, "namespace": namespace},
        "spec": body,
    }


def as_kind(deployment: dict[str, Any], kind: str) -> dict[str, Any]:
    """The Deployment factory's object as a StatefulSet, DaemonSet or ReplicaSet."""
    obj = copy.deepcopy(deployment)
    obj["kind"] = kind
    if kind == "StatefulSet":
        obj["spec"]["serviceName"] = "stash-demo"
    if kind == "DaemonSet":
        del obj["spec"]["replicas"]
    return obj


async def restore_status(akubectl: Any, namespace: str) -> dict[str, Any]:
    rs = await akubectl.get("restoresession", namespace, RS)
    status: dict[str, Any] = (rs or {}).get("status") or {}
    return status


def condition_map(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def init_names(workload: dict[str, Any] | None) -> list[str]:
    assert workload is not None
    return [c["name"] for c in workload["spec"]["template"]["spec"].get("initContainers") or []]


@pytest.mark.parametrize(
    ("rules", "field", "why"),
    [
        ([], "spec.target.rules", "no rule, so nothing would be restored"),
        (
            [{"sourceHost": "host-1", "include": ["*.txt"]}],
            "spec.target.rules[0]",
            "neither paths nor snapshots, so this rule restores nothing",
        ),
    ],
)
async def test_a_session_that_would_restore_nothing_is_refused(
    operator: Any, akubectl: Any, make: Any, namespace: str, rules: list[Any], field: str, why: str
) -> None:
    """Stash restores nothing for a session without rules, or whose rule has neither paths nor snapshots,
    and calls it Succeeded; here it is Invalid, ValidationPassed False naming the field and saying why,
    and no init-container goes in (the Repository and Secret exist: only the rules are wrong)."""
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            make.deployment(namespace=namespace),
            make.seed_storage_secret(namespace),
            make.repository(namespace=namespace),
        ],
    )
    await operator.start(namespace)
    session = restore_session(namespace)
    session["spec"]["target"]["rules"] = rules
    await akubectl("apply", "-f", "-", input_obj=session)

    async def invalid() -> dict[str, Any] | None:
        status = await restore_status(akubectl, namespace)
        return status if status.get("phase") == "Invalid" else None

    status = await eventually(invalid, timeout=30, what="Invalid")
    validation = condition_map(status)["ValidationPassed"]
    assert (validation["status"], validation["reason"]) == ("False", "ResourceValidationFailed")
    assert f"{field}: {why}" in validation["message"], validation["message"]
    assert "StashInitContainerInjected" not in condition_map(status)
    assert init_names(await akubectl.get("deployment", namespace, "stash-demo")) == []


async def test_bad_rules_then_a_missing_repository_then_injection_then_removal(
    operator: Any, akubectl: Any, make: Any, namespace: str
) -> None:
    """Two rules without targetHosts: Invalid, ValidationPassed False naming ``spec.target.rules[1]``,
    a Warning event; nothing injected. Rules fixed but no Repository: Pending with RepositoryFound False
    naming it; still nothing injected. The Repository created: the init-container goes in first, with
    its Role, condition StashInitContainerInjected and event "Init-Container Injection Succeeded".
    Deleted while pending: the init-container and Roles go, the session is released."""
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[make.deployment(namespace=namespace), make.seed_storage_secret(namespace)],
    )
    await operator.start(namespace)
    bad = restore_session(namespace)
    bad["spec"]["target"]["rules"] = [{"paths": ["/source/data"]}, {"paths": ["/source/data"]}]
    await akubectl("apply", "-f", "-", input_obj=bad)

    async def phase_is(phase: str) -> dict[str, Any] | None:
        status = await restore_status(akubectl, namespace)
        return status if status.get("phase") == phase else None

    status = await eventually(lambda: phase_is("Invalid"), timeout=30, what="Invalid")
    validation = condition_map(status)["ValidationPassed"]
    assert (validation["status"], validation["reason"]) == ("False", "ResourceValidationFailed")
    assert "spec.target.rules[1]: only one rule may omit targetHosts" in validation["message"]
    await akubectl.event(
        namespace,
        RS,
        lambda e: (
            e["type"] == "Warning"
            and e["reason"] == "ResourceValidationFailed"
            and e["message"] == validation["message"]
        ),
        what="the validation Warning event",
    )
    assert init_names(await akubectl.get("deployment", namespace, "stash-demo")) == []

    await akubectl("apply", "-f", "-", input_obj=restore_session(namespace))
    status = await eventually(lambda: phase_is("Pending"), timeout=30, what="Pending")
    found = condition_map(status)
    assert (found["RepositoryFound"]["status"], found["RepositoryFound"]["reason"]) == (
        "False",
        "RepositoryNotAvailable",
    )
    assert f"Repository {namespace}/gcs-repo does not exist" in found["RepositoryFound"]["message"]
    assert "StashInitContainerInjected" not in found
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert init_names(deployment) == []
    assert deployment["metadata"]["generation"] == 1

    await akubectl("apply", "-f", "-", input_obj=make.repository(namespace=namespace))

    async def injected() -> dict[str, Any] | None:
        status = await restore_status(akubectl, namespace)
        cond = condition_map(status).get("StashInitContainerInjected")
        return status if cond and cond["status"] == "True" else None

    status = await eventually(injected, timeout=30, what="the init-container injected")
    assert status["phase"] == "Pending"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "RepositoryFound": "True",
        "BackendSecretFound": "True",
        "RestoreTargetFound": "True",
        "ValidationPassed": "True",
        "StashInitContainerInjected": "True",
    }
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert init_names(deployment) == ["stash-init"]
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"][0] == "restore"
    assert {"name": "source-data", "mountPath": "/source/data"} in init["volumeMounts"]
    assert deployment["metadata"]["labels"]["stash.appscode.com/restore-session"] == RS

    await akubectl.event(
        namespace,
        RS,
        lambda e: (
            e["reason"] == "Init-Container Injection Succeeded"
            and e["source"]["component"] == "Workload Controller"
        ),
        what="the injection event",
    )
    role = await akubectl.get("role", namespace, f"stashlet-restore-{RS}")
    assert role is not None
    binding = await akubectl.get("rolebinding", namespace, f"stashlet-restore-{RS}")
    assert binding is not None  # the session's own account, never the workload's
    own = f"stashlet-restore-{RS}"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": own, "namespace": namespace}]
    assert await akubectl.get("serviceaccount", namespace, own) is not None
    token = await akubectl.get("secret", namespace, own)
    assert token is not None
    assert token["type"] == "kubernetes.io/service-account-token"
    generation = deployment["metadata"]["generation"]
    # Reconciling again (a resync, or the operator restarting) writes nothing.
    await operator.stop(cleanup=False)
    controller = await operator.start(namespace)
    await operator.rested(controller, namespace, "Deployment/stash-demo", f"RestoreSession/{RS}")
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert deployment["metadata"]["generation"] == generation

    await akubectl("delete", "restoresession", RS, "-n", namespace, "--wait=false")

    async def removed() -> bool:
        return init_names(await akubectl.get("deployment", namespace, "stash-demo")) == []

    await eventually(removed, timeout=30, what="the init-container removed")
    await akubectl.wait_gone("restoresession", namespace, RS)
    assert await akubectl.get("role", namespace, f"stashlet-restore-{RS}") is None
    assert await akubectl.get("rolebinding", namespace, f"stashlet-restore-{RS}") is None
    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    assert "stash.appscode.com/restore-session" not in (deployment["metadata"].get("labels") or {})
    assert "annotations" not in deployment["spec"]["template"]["metadata"] or not any(
        k.startswith("stash.appscode.com/") for k in deployment["spec"]["template"]["metadata"]["annotations"]
    )


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "ReplicaSet"])
async def test_each_workload_kind_gets_the_init_container(
    operator: Any, akubectl: Any, make: Any, namespace: str, kind: str
) -> None:
    """StatefulSet, DaemonSet and ReplicaSet targets get ``stash-init`` first in their pod template."""
    workload = as_kind(make.deployment(namespace=namespace), kind)
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[workload, make.seed_storage_secret(namespace), make.repository(namespace=namespace)],
    )
    await operator.start(namespace)
    await akubectl("apply", "-f", "-", input_obj=restore_session(namespace, kind=kind))

    async def injected() -> bool:
        return init_names(await akubectl.get(kind.lower(), namespace, "stash-demo")) == ["stash-init"]

    await eventually(injected, timeout=30, what=f"stash-init in the {kind}")

    async def reported() -> dict[str, Any] | None:
        # The status is written after the workload: wait for it rather than read it once.
        found: dict[str, Any] | None = condition_map(await restore_status(akubectl, namespace)).get(
            "StashInitContainerInjected"
        )
        return found

    condition = await eventually(reported, timeout=30, what="StashInitContainerInjected in the status")
    assert condition["message"] == (
        f"Successfully injected stash init-container into apps/v1 {kind.lower()}/stash-demo."
    )


async def test_a_repository_whose_usage_policy_refuses_the_namespace_is_invalid_and_grants_nothing(
    operator: Any, akubectl: Any, make: Any, namespace: str, second_namespace: str
) -> None:
    """A Repository in another namespace with the default policy (Same): ValidationPassed False naming
    ``spec.repository``, no init-container, no Role in either namespace. Allowing ``All`` fixes it."""
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=[
            make.deployment(namespace=namespace),
            make.seed_storage_secret(second_namespace),
            make.repository(namespace=second_namespace),
        ],
    )
    await operator.start(namespace, second_namespace)
    await akubectl(
        "apply",
        "-f",
        "-",
        input_obj=restore_session(namespace, repository={"name": "gcs-repo", "namespace": second_namespace}),
    )

    async def invalid() -> dict[str, Any] | None:
        status = await restore_status(akubectl, namespace)
        return status if status.get("phase") == "Invalid" else None

    status = await eventually(invalid, timeout=30, what="Invalid")
    message = condition_map(status)["ValidationPassed"]["message"]
    assert message.startswith("spec.repository: "), message
    assert namespace in message
    assert init_names(await akubectl.get("deployment", namespace, "stash-demo")) == []
    for ns in (namespace, second_namespace):
        roles = [r["metadata"]["name"] for r in await akubectl.items("roles", ns)]
        assert not [r for r in roles if r.startswith("stashlet-restore")], roles

    policy = {"spec": {"usagePolicy": {"allowedNamespaces": {"from": "All"}}}}
    await akubectl(
        "patch", "repository", "gcs-repo", "-n", second_namespace, "--type=merge", "-p", json.dumps(policy)
    )

    async def injected() -> bool:
        return init_names(await akubectl.get("deployment", namespace, "stash-demo")) == ["stash-init"]

    await eventually(injected, timeout=60, what="stash-init once the policy admits the namespace")
    assert await akubectl.get("role", second_namespace, f"stashlet-restore-{namespace}-{RS}") is not None
