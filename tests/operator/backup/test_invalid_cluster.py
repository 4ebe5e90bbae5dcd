"""Bad input on the real control plane: the right condition, phase and event, nothing made half-way, and
the phase following once the input is put right.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

pytestmark = pytest.mark.cluster


@dataclass
class Ctx:
    """What a case works with."""

    kubectl: Any
    make: Any
    ns: str
    other: str

    async def apply(self, obj: dict[str, Any]) -> None:
        await self.kubectl("apply", "-f", "-", input_obj=obj)

    async def patch_bc(self, patch: dict[str, Any]) -> None:
        await self.kubectl(
            "patch",
            "backupconfiguration",
            "pause-backup",
            "-n",
            self.ns,
            "--type=merge",
            "-p",
            json.dumps(patch),
        )


Step = Callable[[Ctx], Awaitable[None]]


@dataclass
class Case:
    """One kind of bad input: how to make it, what it must say, how to put it right."""

    id: str
    prepare: Step
    phase: str
    condition: str
    status: str
    reason: str
    message: str
    event: str
    fix: Step
    config: Callable[[Ctx], dict[str, Any]] = lambda c: c.make.backup_configuration(namespace=c.ns)


async def secret(c: Ctx) -> None:
    await c.apply(c.make.seed_storage_secret(c.ns))


async def repo(c: Ctx) -> None:
    await c.apply(c.make.repository(namespace=c.ns))


async def workload(c: Ctx) -> None:
    await c.apply(c.make.deployment(namespace=c.ns))


def steps(*parts: Step) -> Step:
    async def run(c: Ctx) -> None:
        for part in parts:
            await part(c)

    return run


async def repo_elsewhere(c: Ctx) -> None:
    await c.apply(c.make.seed_storage_secret(c.other))
    await c.apply(c.make.repository(namespace=c.other, usagePolicy={"allowedNamespaces": {"from": "Same"}}))


async def admit_by_selector(c: Ctx) -> None:
    selector = {"matchLabels": {"kubernetes.io/metadata.name": c.ns}}
    policy = {"allowedNamespaces": {"from": "Selector", "selector": selector}}
    await c.apply(c.make.repository(namespace=c.other, usagePolicy=policy))


async def secret_without_password(c: Ctx) -> None:
    body = c.make.seed_storage_secret(c.ns)
    del body["stringData"]["RESTIC_PASSWORD"]
    await c.apply(body)


async def use_deployment(c: Ctx) -> None:
    await c.patch_bc({"spec": {"target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment"}}}})


async def good_schedule(c: Ctx) -> None:
    await c.patch_bc({"spec": {"schedule": "*/5 * * * *"}})


async def good_volume(c: Ctx) -> None:
    await c.patch_bc(
        {"spec": {"target": {"volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}]}}}
    )


def config(**spec: Any) -> Callable[[Ctx], dict[str, Any]]:
    return lambda c: c.make.backup_configuration(namespace=c.ns, **spec)


def repo_in_other(c: Ctx) -> dict[str, Any]:
    body: dict[str, Any] = c.make.backup_configuration(
        namespace=c.ns, repository={"name": "gcs-repo", "namespace": c.other}
    )
    return body


def unsupported(c: Ctx) -> dict[str, Any]:
    body: dict[str, Any] = c.make.backup_configuration(namespace=c.ns)
    body["spec"]["target"]["ref"] = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "stash-demo"}
    return body


def wrong_volume(c: Ctx) -> dict[str, Any]:
    body: dict[str, Any] = c.make.backup_configuration(namespace=c.ns)
    body["spec"]["target"]["volumeMounts"] = [{"name": "data", "mountPath": "/source/data"}]
    return body


BAD_SECRET = "BackendSecretNotAvailable"
INVALID = "ResourceValidationFailed"
CASES = [
    Case("missing-repository", steps(secret, workload), "NotReady", "RepositoryFound", "False",
         "RepositoryNotAvailable", "Repository {ns}/gcs-repo does not exist", "RepositoryNotAvailable", repo),
    Case("repository-refused", steps(workload, repo_elsewhere), "Invalid", "ValidationPassed", "False",
         INVALID, "spec.usagePolicy.allowedNamespaces of Repository {other}/gcs-repo",
         INVALID, admit_by_selector, repo_in_other),
    Case("missing-secret", steps(repo, workload), "NotReady", "BackendSecretFound", "False",
         BAD_SECRET, "Backend Secret {ns}/gcs-secret does not exist", BAD_SECRET, secret),
    Case("secret-without-password", steps(secret_without_password, repo, workload), "NotReady",
         "BackendSecretFound", "False", BAD_SECRET, "has no non-empty key RESTIC_PASSWORD", BAD_SECRET,
         secret),
    Case("missing-target", steps(secret, repo), "NotReady", "BackupTargetFound", "False",
         "TargetNotAvailable", "Backup target apps/v1 deployment/stash-demo does not exist",
         "TargetNotAvailable", workload),
    Case("unsupported-kind", steps(secret, repo, workload), "Invalid", "ValidationPassed", "False",
         INVALID, "spec.target.ref.kind: CronJob is not supported", INVALID, use_deployment, unsupported),
    Case("invalid-cron", steps(secret, repo, workload), "Invalid", "ValidationPassed", "False", INVALID,
         "spec.schedule: 'every minute' is not a schedule the CronJob controller accepts: expected exactly 5 "
         "fields", INVALID, good_schedule, config(schedule="every minute")),
    Case("schedule-with-time-zone", steps(secret, repo, workload), "Invalid", "ValidationPassed", "False",
         INVALID, "spec.schedule: 'CRON_TZ=Europe/Paris 0 3 * * *' is not a schedule the CronJob controller "
         "accepts: a CronJob takes no TZ or CRON_TZ", INVALID, good_schedule,
         config(schedule="CRON_TZ=Europe/Paris 0 3 * * *")),
    Case("volume-not-in-pod", steps(secret, repo, workload), "Invalid", "ValidationPassed", "False",
         INVALID, "spec.target.volumeMounts[0].name: Deployment {ns}/stash-demo has no volume 'data'",
         INVALID, good_volume, wrong_volume),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_reported_and_nothing_is_made_until_it_is_put_right(
    second_namespace: str, operator: Any, akubectl: Any, make: Any, namespace: str, case: Case
) -> None:
    """Each kind of bad input gives its condition (naming object and field), phase and Warning event;
    no sidecar, CronJob or Role exists; once put right the configuration becomes Ready.
    """
    c = Ctx(akubectl, make, namespace, second_namespace)
    await case.prepare(c)
    await operator.start(namespace, second_namespace)
    await c.apply(case.config(c))
    bc = await akubectl.wait_phase(namespace, "pause-backup", case.phase)
    conditions = {cond["type"]: cond for cond in bc["status"]["conditions"]}
    cond = conditions[case.condition]
    assert (cond["status"], cond["reason"]) == (case.status, case.reason), cond
    assert case.message.format(ns=namespace, other=second_namespace) in cond["message"]
    await akubectl.event(
        namespace,
        "pause-backup",
        lambda e: e["type"] == "Warning" and e["reason"] == case.event and e["message"] == cond["message"],
        what=f"the {case.event} Warning event",
    )

    deployment = await akubectl.get("deployment", namespace, "stash-demo")
    if deployment is not None:
        assert deployment["metadata"]["generation"] == 1
        assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["busybox"]
    assert await akubectl.get("cronjob", namespace, "stash-trigger-pause-backup") is None
    for ns in (namespace, second_namespace):
        assert not [
            r for r in await akubectl.items("roles", ns) if r["metadata"]["name"].startswith("stashlet")
        ]

    await case.fix(c)
    await akubectl.wait_phase(namespace, "pause-backup", "Ready")
    assert await akubectl.get("cronjob", namespace, "stash-trigger-pause-backup") is not None
