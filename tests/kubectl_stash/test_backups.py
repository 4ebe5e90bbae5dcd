"""``kubectl stash trigger``, ``pause backup`` and ``resume backup`` against the real API server."""

from __future__ import annotations

from typing import Any

import pytest
from tests.kubectl_stash.conftest import Plugin, configuration, get_json

pytestmark = pytest.mark.cluster


def test_trigger_creates_a_session_as_the_cronjob_does(plugin: Plugin, kubectl: Any, namespace: str) -> None:
    kubectl("apply", "-f", "-", input_obj=configuration("app-backup", namespace))
    ran = plugin("trigger", "app-backup", "-n", namespace)
    assert ran.code == 0, ran.err
    name = ran.out.split()[0].split("/")[1]
    assert ran.out == f"backupsessions.stash.appscode.com/{name} created\n"
    session = get_json(kubectl, "backupsession", name, "-n", namespace)
    assert name.startswith("app-backup-")
    assert session["spec"]["invoker"] == {
        "apiGroup": "stash.appscode.com",
        "kind": "BackupConfiguration",
        "name": "app-backup",
    }
    assert session["metadata"]["labels"]["stash.appscode.com/invoker-name"] == "app-backup"
    assert session["metadata"]["ownerReferences"][0]["name"] == "app-backup"
    again = plugin("-n", namespace, "trigger", "app-backup")  # flags before the command too
    assert again.code == 0, again.err
    assert again.out != ran.out  # a second session in the same second gets the next second's name


def test_trigger_names_a_missing_configuration(plugin: Plugin, namespace: str) -> None:
    ran = plugin("trigger", "nope", "-n", namespace)
    assert ran.code == 1
    assert ran.err == f"error: BackupConfiguration {namespace}/nope not found\n"


def test_pause_resume_and_trigger_refused_while_paused(plugin: Plugin, kubectl: Any, namespace: str) -> None:
    kubectl("apply", "-f", "-", input_obj=configuration("app-backup", namespace))
    paused = plugin("pause", "backup", "--backupconfig=app-backup", "-n", namespace)
    assert (paused.code, paused.out) == (0, "backupconfigurations.stash.appscode.com/app-backup paused\n")
    assert get_json(kubectl, "backupconfiguration", "app-backup", "-n", namespace)["spec"]["paused"] is True
    refused = plugin("trigger", "app-backup", "-n", namespace)
    assert refused.code == 1
    assert f"BackupConfiguration {namespace}/app-backup is paused (spec.paused: true)" in refused.err
    assert get_json(kubectl, "backupsession", "-n", namespace)["items"] == []
    again = plugin("pause", "backup", "--backupconfig=app-backup", "-n", namespace)
    assert again.out.endswith(" unchanged\n")
    resumed = plugin("resume", "backup", "--backupconfig=app-backup", "-n", namespace)
    assert resumed.out == "backupconfigurations.stash.appscode.com/app-backup resumed\n"
    assert get_json(kubectl, "backupconfiguration", "app-backup", "-n", namespace)["spec"]["paused"] is False
    missing = plugin("pause", "backup", "-n", namespace)
    assert (missing.code, missing.err) == (
        1,
        "error: --backupconfig is required (the BackupConfiguration to pause or resume)\n",
    )


def test_the_users_rbac_decides(plugin_as: Any, kubectl: Any, namespace: str) -> None:
    kubectl("apply", "-f", "-", input_obj=configuration("app-backup", namespace))
    nobody = plugin_as(namespace, "nobody")
    ran = nobody("trigger", "app-backup", "-n", namespace)
    assert ran.code == 1
    assert ran.err.startswith(f"error: BackupConfiguration {namespace}/app-backup: ")
    assert "forbidden" in ran.err
    assert get_json(kubectl, "backupsession", "-n", namespace)["items"] == []


def test_help_reads_like_kubectls(plugin: Plugin) -> None:
    top = plugin("--help")
    assert top.code == 0
    assert top.out.startswith("kubectl stash manages") or top.out.startswith(
        "Usage:\n  kubectl stash [command] [flags]"
    )
    for heading in (
        "Available Commands:",
        "Examples:",
        "Global Flags:",
        'Use "kubectl stash <command> --help"',
    ):
        assert heading in top.out
    sub = plugin("trigger", "--help")
    assert sub.out.startswith("Usage:\n  kubectl stash trigger <backupconfig-name> [flags]\n")
    assert "Examples:\n  kubectl stash trigger my-config --namespace=demo" in sub.out
