"""``kubectl stash status`` and ``kubectl stash cp`` against the real API server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.kubectl_stash.conftest import Plugin, configuration, get_json

pytestmark = pytest.mark.cluster

SECRET_VALUE = "status-and-copy-password-55"


def _objects(kubectl: Any, namespace: str) -> None:
    kubectl(
        "create",
        "secret",
        "generic",
        "repo-secret",
        "-n",
        namespace,
        f"--from-literal=RESTIC_PASSWORD={SECRET_VALUE}",
    )
    repository = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": namespace, "labels": {"team": "a"}},
        "spec": {"backend": {"rest": {"url": "http://rest:8000/x"}, "storageSecretName": "repo-secret"}},
    }
    kubectl("apply", "-f", "-", input_obj=repository)


def _rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{3,}", line.strip()) for line in text.strip().splitlines()]


def test_status_shows_last_session_next_run_size_and_integrity(
    plugin: Plugin, kubectl: Any, namespace: str
) -> None:
    _objects(kubectl, namespace)
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=configuration(
            "every-five",
            namespace,
            repository={"name": "repo", "namespace": namespace},
            schedule="*/5 * * * *",
        ),
    )
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=configuration("paused", namespace, paused=True, repository={"name": "gone"}),
    )
    assert plugin("trigger", "every-five", "-n", namespace).code == 0
    [session] = get_json(kubectl, "backupsession", "-n", namespace)["items"]
    kubectl(
        "patch",
        "backupsession",
        session["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Succeeded"}}),
    )
    by_hand = {  # as seed 003's instant-backupsession: no labels
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": "by-hand", "namespace": namespace},
        "spec": {
            "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "paused"}
        },
    }
    kubectl("apply", "-f", "-", input_obj=by_hand)
    kubectl(
        "patch",
        "backupsession",
        "by-hand",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Skipped"}}),
    )
    status = {"integrity": True, "totalSize": "2.345 MiB", "snapshotCount": 3}
    kubectl(
        "patch",
        "repository",
        "repo",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )

    ran = plugin("status", "-n", namespace)
    assert ran.code == 0, ran.err
    header, first, second = _rows(ran.out)
    assert header == [
        "NAMESPACE",
        "BACKUPCONFIGURATION",
        "SCHEDULE",
        "PAUSED",
        "LAST SESSION",
        "PHASE",
        "AGE",
        "NEXT RUN",
        "REPOSITORY",
        "SIZE",
        "INTEGRITY",
    ]
    assert first[:6] == [
        namespace,
        "every-five",
        "*/5 * * * *",
        "false",
        session["metadata"]["name"],
        "Succeeded",
    ]
    assert re.fullmatch(r"\d+s", first[6])
    assert re.fullmatch(r"in (\d+s|[1-5]m(\d+s)?)", first[7])
    assert first[8:] == [f"{namespace}/repo", "2.345 MiB", "ok"]
    assert second[:6] == [namespace, "paused", "0 0 1 1 *", "true", "by-hand", "Skipped"]
    assert re.fullmatch(r"\d+s", second[6])
    assert second[7:] == ["<none>", f"{namespace}/gone", "<none>", "<missing>"]
    everywhere = plugin("status", "--all-namespaces")
    assert any(row[:2] == [namespace, "every-five"] for row in _rows(everywhere.out))
    empty = plugin("status", "-n", "default")
    assert empty.out in ("No BackupConfigurations found in namespace default.\n",) or empty.out.startswith(
        "NAMESPACE"
    )


def test_cp_backupconfig_brings_its_repository_and_secret(
    plugin: Plugin, kubectl: Any, namespace: str, control_plane: Any
) -> None:
    _objects(kubectl, namespace)
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj=configuration("app-backup", namespace, repository={"name": "repo", "namespace": namespace}),
    )
    destination = f"{namespace}-to"
    kubectl("create", "namespace", destination)
    try:
        ran = plugin("cp", "backupconfig", "app-backup", "-n", namespace, f"--to-namespace={destination}")
        assert ran.code == 0, ran.err
        assert ran.out == (
            f"secret/repo-secret copied to namespace {destination}\n"
            f"repositories.stash.appscode.com/repo copied to namespace {destination}\n"
            f"backupconfigurations.stash.appscode.com/app-backup copied to namespace {destination}\n"
        )
        assert SECRET_VALUE not in ran.out + ran.err
        source_secret = get_json(kubectl, "secret", "repo-secret", "-n", namespace)
        copied_secret = get_json(kubectl, "secret", "repo-secret", "-n", destination)
        assert copied_secret["data"] == source_secret["data"]
        repo = get_json(kubectl, "repository", "repo", "-n", destination)
        assert repo["metadata"]["labels"] == {"team": "a"}
        assert repo["spec"]["backend"]["storageSecretName"] == "repo-secret"
        bc = get_json(kubectl, "backupconfiguration", "app-backup", "-n", destination)
        assert bc["spec"]["repository"] == {"name": "repo"}  # the copy in its own namespace
        assert "status" not in bc or bc["status"] == {}
        again = plugin("cp", "repository", "repo", "-n", namespace, f"--to-namespace={destination}")
        assert again.out == (
            f"secret/repo-secret already exists in namespace {destination}: left as it is\n"
            f"repositories.stash.appscode.com/repo already exists in namespace {destination}: left as it is\n"
        )
        missing = plugin("cp", "secret", "nope", "-n", namespace, f"--to-namespace={destination}")
        assert missing.err == f"error: Secret {namespace}/nope not found\n"
        no_target = plugin("cp", "secret", "repo-secret", "-n", namespace)
        assert no_target.err == "error: --to-namespace is required: the namespace to copy into\n"
    finally:
        kubectl("delete", "namespace", destination, "--wait=false", check=False)
