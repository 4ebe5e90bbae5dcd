"""Seed 000 (cross-namespace auto-backup), end to end, with every part real.

The seed's walkthrough in its own namespaces: ``backup`` with the storage Secret (made as the seed's
``kubectl create secret generic``) and the seed's BackupBlueprint applied as written (GCS backend); then
for ``user1``, ``user2`` and ``user3`` the seed's ConfigMaps and annotated Deployment, applied as written,
and after each the seed's checks: the Repository ``<user>-deploy-stash-demo`` in ``backup`` with its
prefix substituted, the Ready BackupConfiguration ``deploy-stash-demo`` whose spec is the seed's, field
for field, and ``kubectl get`` shaped as the seed prints it. stashlet is installed with its Helm chart;
the real node runs the Deployments' busybox containers and the injected ``stash`` sidecars from their
images with their own service-account tokens, so the cross-namespace access to the Secret is exercised
through RBAC for real.

Departures, because GCS cannot run on this machine: for the BackupSessions a second blueprint,
``managed-backup-blueprint-rest``, identical to the seed's but with a restic REST-server backend
``rest: {url: <rest server>/stash-auto-backup-${TARGET_NAMESPACE}-${TARGET_KIND}-${TARGET_NAME}}`` (the
REST server answers 404 to repositories nested deeper than two levels, so the seed's four-level prefix
becomes one ``-``-joined name), and the Deployments are re-annotated to use it: the same Repository
objects are repointed. The sessions are created by hand as the trigger names them (the seed's schedule is
``*/5``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.rest_repository import restic_output

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

SEED_000 = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_084401b39e3f0ad7.txt"
FENCED_YAML = re.compile(r"^```yaml[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLUEPRINT = "managed-backup-blueprint"
REST_BLUEPRINT = "managed-backup-blueprint-rest"
USERS = ("user1", "user2", "user3")
PASSWORD = "changeit"


def seed_objects() -> list[dict[str, Any]]:
    """Every object seed 000 writes as YAML (its ``...`` elisions dropped), in order."""
    import yaml

    found: list[dict[str, Any]] = []
    for match in FENCED_YAML.finditer(SEED_000.read_text(encoding="utf-8")):
        block = "\n".join(line for line in match.group(1).splitlines() if line.strip() != "...")
        found += [o for o in yaml.safe_load_all(block) if isinstance(o, dict) and o.get("kind")]
    return found


def seed(kind: str, namespace: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o
        for o in seed_objects()
        if o["kind"] == kind
        and o["metadata"].get("namespace") == namespace
        and (name is None or o["metadata"]["name"] == name)
    ]


def columns(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


@pytest.fixture
def blueprints(kubectl: Callable[..., Any]) -> Iterator[None]:
    """The test's cluster-scoped BackupBlueprints are deleted afterwards."""
    yield
    kubectl("delete", "backupblueprint", BLUEPRINT, REST_BLUEPRINT, "--ignore-not-found", check=False)


async def test_seed_000_three_namespaces_back_up_through_one_blueprint(
    operator_for: Any,
    named_namespace: Callable[[str], str],
    blueprints: None,
    kubectl: Any,
    rest_server: str,
    rest_backend: Any,
    helpers: Any,
) -> None:
    """The seed's walkthrough: one blueprint and Secret in ``backup``; each user's annotated Deployment
    gets a Repository in ``backup`` (substituted prefix) and a Ready BackupConfiguration shaped as the
    seed's; the injected agents, reading the Secret across namespaces with their own identities, back the
    ConfigMap volumes up; a BackupSession in each namespace Succeeds, all three writing to the one backend
    under their own prefixes; the seed's cleanup removes the configurations and sidecars."""
    get = helpers.get
    for ns in ("backup", *USERS):
        named_namespace(ns)
    operator_for(",".join(("backup", *USERS)))

    kubectl(
        "create",
        "secret",
        "generic",
        "-n",
        "backup",
        "gcs-secret",
        f"--from-literal=RESTIC_PASSWORD={PASSWORD}",
        "--from-literal=GOOGLE_PROJECT_ID=your-project-id",
        "--from-literal=GOOGLE_SERVICE_ACCOUNT_JSON_KEY={}",
    )
    blueprint = seed("BackupBlueprint")[0]
    assert blueprint["metadata"]["name"] == BLUEPRINT
    kubectl("apply", "-f", "-", input_obj=blueprint)

    for user in USERS:
        kubectl("apply", "-f", "-", input_obj=[*seed("ConfigMap", user), *seed("Deployment", user)])
        repo_name = f"{user}-deploy-stash-demo"
        expected_repo = seed("Repository", "backup", repo_name)[0]

        def repo_made(name: str = repo_name) -> dict[str, Any] | None:
            items = get(kubectl, "repositories", "-n", "backup")["items"]
            return next((i for i in items if i["metadata"]["name"] == name), None)

        repo = await helpers.until(repo_made, timeout=30, what=f"Repository backup/{repo_name}")
        assert repo["spec"] == expected_repo["spec"]
        rows = columns(kubectl("get", "repository", "-n", "backup").stdout)
        assert rows[0] == ["NAME", "INTEGRITY", "SIZE", "SNAPSHOT-COUNT", "LAST-SUCCESSFUL-BACKUP", "AGE"]
        assert [r[0] for r in rows[1:]] == [f"{u}-deploy-stash-demo" for u in USERS[: USERS.index(user) + 1]]

        def ready(ns: str = user) -> dict[str, Any] | None:
            bc = get(kubectl, "backupconfiguration", "deploy-stash-demo", "-n", ns)
            return bc if bc.get("status", {}).get("phase") == "Ready" else None

        bc = await helpers.until(ready, timeout=60, what=f"{user}/deploy-stash-demo Ready")
        expected_bc = seed("BackupConfiguration", user, "deploy-stash-demo")[0]["spec"]
        assert {k: v for k, v in bc["spec"].items() if k in expected_bc} == expected_bc
        assert set(bc["spec"]) - set(expected_bc) <= {"tempDir"}  # the seed's user3 listing stops early
        rows = columns(kubectl("get", "backupconfiguration", "-n", user).stdout)
        assert rows[0] == ["NAME", "TASK", "SCHEDULE", "PAUSED", "PHASE", "AGE"]
        assert rows[1][:3] == ["deploy-stash-demo", "*/5 * * * *", "Ready"]
        secrets = get(kubectl, "secrets", "-n", user)["items"]
        assert "gcs-secret" not in {s["metadata"]["name"] for s in secrets}  # never copied

    # The REST-server twin of the blueprint, and the Deployments moved onto it.
    rest_blueprint = json.loads(json.dumps(blueprint))
    rest_blueprint["metadata"]["name"] = REST_BLUEPRINT
    rest_blueprint["spec"]["backend"] = {
        "rest": {
            "url": f"{rest_server}/stash-auto-backup-${{TARGET_NAMESPACE}}-${{TARGET_KIND}}-${{TARGET_NAME}}"
        },
        "storageSecretName": "gcs-secret",
    }
    kubectl("apply", "-f", "-", input_obj=rest_blueprint)
    for user in USERS:
        kubectl(
            "annotate",
            "deployment",
            "stash-demo",
            "-n",
            user,
            "--overwrite",
            f"stash.appscode.com/backup-blueprint={REST_BLUEPRINT}",
        )

    def repointed() -> bool:
        items = get(kubectl, "repositories", "-n", "backup")["items"]
        urls = {i["metadata"]["name"]: i["spec"]["backend"].get("rest", {}).get("url") for i in items}
        return urls == {
            f"{u}-deploy-stash-demo": f"{rest_server}/stash-auto-backup-{u}-deployment-stash-demo"
            for u in USERS
        }

    await helpers.until(repointed, timeout=30, what="the Repositories repointed at the REST server")

    # Every replica runs with its stash sidecar on the node.
    for user in USERS:
        await helpers.until(lambda ns=user: ready(ns), timeout=30, what=f"{user} still Ready")
        assert len(await helpers.rolled_out(kubectl, user, "stash-demo")) == 3

    unix = int(time.time())
    for user in USERS:
        kubectl(
            "create",
            "-f",
            "-",
            input_obj={
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupSession",
                "metadata": {
                    "name": f"deploy-stash-demo-{unix}",
                    "namespace": user,
                    "labels": {
                        "stash.appscode.com/backup-configuration": "deploy-stash-demo",
                        "stash.appscode.com/invoker-type": "BackupConfiguration",
                        "stash.appscode.com/invoker-name": "deploy-stash-demo",
                    },
                },
                "spec": {
                    "invoker": {
                        "apiGroup": "stash.appscode.com",
                        "kind": "BackupConfiguration",
                        "name": "deploy-stash-demo",
                    }
                },
            },
        )
    for user in USERS:

        def finished(ns: str = user) -> dict[str, Any] | None:
            session = get(kubectl, "backupsession", f"deploy-stash-demo-{unix}", "-n", ns)
            return session if session.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

        session = await helpers.until(finished, timeout=120, what=f"the BackupSession in {user} finished")
        assert session["status"]["phase"] == "Succeeded", json.dumps(session["status"])
        rows = columns(kubectl("get", "backupsession", "-n", user).stdout)
        assert rows[0] == ["NAME", "INVOKER-TYPE", "INVOKER-NAME", "PHASE", "DURATION", "AGE"]
        assert rows[1][:4] == [
            f"deploy-stash-demo-{unix}",
            "BackupConfiguration",
            "deploy-stash-demo",
            "Succeeded",
        ]
        assert re.fullmatch(r"\d+(ms|s)|\d+m\d+s", rows[1][4])

    def counted() -> list[list[str]] | None:
        rows = columns(kubectl("get", "repository", "-n", "backup").stdout)[1:]
        # At least this test's snapshot: the seed's */5 schedule may have added one meanwhile.
        return rows if all(len(r) == 6 and r[1] == "true" and int(r[3]) >= 1 for r in rows) else None

    rows = await helpers.until(counted, timeout=120, what="the Repositories' status")
    assert [r[0] for r in rows] == [f"{u}-deploy-stash-demo" for u in USERS]

    # One backend, three prefixes, each holding its own namespace's ConfigMap data: one snapshot group
    # per target path, as Stash lays them out, the latest of each holding that volume's file.
    for user in USERS:
        url = f"{rest_backend.host_url}/stash-auto-backup-{user}-deployment-stash-demo"
        latest: dict[tuple[str, ...], str] = {}
        for snapshot in sorted(json.loads(restic(url, "snapshots", "--json")), key=lambda s: s["time"]):
            latest[tuple(snapshot["paths"])] = snapshot["id"]
        assert len(latest) == 2, latest
        files: dict[str, tuple[str, str]] = {}
        for snapshot_id in latest.values():
            listing = restic(url, "ls", "--json", snapshot_id)
            nodes = [json.loads(line) for line in listing.splitlines() if line.startswith("{")]
            files |= {n["name"]: (snapshot_id, n["path"]) for n in nodes if n.get("type") == "file"}
        assert set(files) == {"file1.txt", "file2.txt"}
        for name, config_map in (("file1.txt", "stash-sample-data-1"), ("file2.txt", "stash-sample-data-2")):
            assert restic(url, "dump", *files[name]) == f"Data from ConfigMap '{config_map}'"

    # The seed's cleanup: the Deployments go and their configurations (and sidecars, RBAC) with them.
    for user in USERS:
        kubectl("delete", "deployment", "-n", user, "stash-demo")
    for user in USERS:

        def collected(ns: str = user) -> bool:
            return not get(kubectl, "backupconfigurations", "-n", ns)["items"]

        await helpers.until(collected, timeout=60, what=f"{user}/deploy-stash-demo collected")
        roles = get(kubectl, "roles", "-n", "backup")["items"]
        assert not [r for r in roles if r["metadata"]["name"].startswith(f"stashlet-sidecar-{user}-")]
    for user in USERS:
        kubectl("delete", "repository", "-n", "backup", f"{user}-deploy-stash-demo")
    kubectl("delete", "backupblueprint", BLUEPRINT, REST_BLUEPRINT)
    kubectl("delete", "secret", "-n", "backup", "gcs-secret")


def restic(url: str, *args: str) -> str:
    """Plain restic against ``url`` (as the host reaches the REST server)."""
    return restic_output(url, PASSWORD, *args)
