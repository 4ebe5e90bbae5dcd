"""Fixtures for the plugin's tests: ``kubectl stash`` run in-process against the real control plane, as the
admin or as a ServiceAccount with only the rights a test grants it, and stashlet objects to act on."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.kubeconfigs import token_kubeconfig

from stashlet.kubectl_stash import cli


@dataclass(frozen=True)
class Ran:
    """One ``kubectl stash`` run: exit status and what it printed."""

    code: int
    out: str
    err: str


Plugin = Callable[..., Ran]


def run_plugin(kubeconfig: Path, *argv: str) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run([*argv, f"--kubeconfig={kubeconfig}"], out, err)
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.fixture
def plugin(control_plane: Any) -> Plugin:
    """``kubectl stash <argv>`` as the cluster admin."""
    return lambda *argv: run_plugin(control_plane.kubeconfig, *argv)


@pytest.fixture
def plugin_as(control_plane: Any, kubectl: Any, tmp_path: Path) -> Callable[[str, str], Plugin]:
    """``kubectl stash`` as a new ServiceAccount ``name`` in ``namespace`` (a token, no rights but those
    the test grants)."""

    def make(namespace: str, name: str) -> Plugin:
        kubectl("create", "serviceaccount", name, "-n", namespace)
        token = kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
        path = token_kubeconfig(control_plane, token, tmp_path / f"kubeconfig-{name}", namespace)
        return lambda *argv: run_plugin(path, *argv)

    return make


def configuration(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """Seed 003's BackupConfiguration (a yearly schedule: no firing meets a test)."""
    body: dict[str, Any] = {
        "repository": {"name": "repo"},
        "schedule": "0 0 1 1 *",
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            "volumeMounts": [{"name": "data", "mountPath": "/source/data"}],
            "paths": ["/source/data"],
        },
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        **spec,
    }
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def get_json(kubectl: Any, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


PASSWORD = "old-horse-battery-staple-0417"


@dataclass(frozen=True)
class LocalRepo:
    """A Repository on the local backend (a folder of this machine), its Secret, and restic to read it."""

    namespace: str
    name: str
    secret: str
    folder: Path
    restic: Path

    def restic_run(self, password: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"RESTIC_REPOSITORY": str(self.folder), "RESTIC_PASSWORD": password, "PATH": "/usr/bin:/bin"}
        return subprocess.run(
            [str(self.restic), "--no-cache", *args],
            env=env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def opens_with(self, password: str) -> bool:
        return self.restic_run(password, "cat", "config", "--no-lock", check=False).returncode == 0


def local_repository(
    kubectl: Any, namespace: str, folder: Path, restic: Path, *, name: str = "repo", password: str = PASSWORD
) -> LocalRepo:
    """A Repository ``name`` (local backend at ``folder/repo``) with Secret ``<name>-secret``, initialised."""
    secret = f"{name}-secret"
    kubectl(
        "create", "secret", "generic", secret, "-n", namespace, f"--from-literal=RESTIC_PASSWORD={password}"
    )
    repository = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backend": {
                "local": {"mountPath": str(folder), "subPath": "repo", "hostPath": {"path": str(folder)}},
                "storageSecretName": secret,
            }
        },
    }
    kubectl("apply", "-f", "-", input_obj=repository)
    repo = LocalRepo(namespace, name, secret, folder / "repo", restic)
    repo.restic_run(password, "init")
    return repo
