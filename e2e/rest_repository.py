"""The restic REST server's repositories, for the end-to-end tests: the Secret and Repository a test's
objects use, and plain restic against them as this host reaches the server (what a test compares the
product's work with)."""

from __future__ import annotations

import base64
import subprocess
from typing import Any

from stashlet.localcluster import tools


def rest_storage(
    namespace: str,
    url: str,
    password: str,
    *,
    name: str = "rest-repo",
    secret: str = "rest-secret",  # noqa: S107 - a Secret's name
    **spec: Any,
) -> list[dict[str, Any]]:
    """Secret ``secret`` holding ``password`` and Repository ``name`` on the REST server at ``url`` (as pods
    reach it); ``spec`` adds Repository fields (e.g. ``wipeOut``)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": namespace},
            "data": {"RESTIC_PASSWORD": base64.b64encode(password.encode()).decode()},
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"backend": {"rest": {"url": url}, "storageSecretName": secret}, **spec},
        },
    ]


def plain_restic(url: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Plain restic against the repository at ``url`` (as this host reaches the REST server)."""
    env = {"RESTIC_REPOSITORY": f"rest:{url}", "RESTIC_PASSWORD": password, "PATH": "/usr/bin:/bin"}
    argv = [str(tools.ensure("restic")), "--no-cache", "--retry-lock=2m", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=180)


def restic_output(url: str, password: str, *args: str) -> str:
    """What plain restic prints; the test fails with restic's words when it exits non-zero."""
    done = plain_restic(url, password, *args)
    assert done.returncode == 0, f"restic {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout
