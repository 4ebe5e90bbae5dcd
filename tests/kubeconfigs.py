"""A kubeconfig that presents one bearer token to the test cluster's API server (verified with the
cluster's CA), never the admin's credentials: how the tests act as a service account."""

from __future__ import annotations

import json
from pathlib import Path

from stashlet.localcluster.controlplane import ControlPlane


def token_kubeconfig(plane: ControlPlane, token: str, path: Path, namespace: str | None = None) -> Path:
    """Write, at ``path``, a kubeconfig presenting ``token`` (with ``namespace`` as its default)."""
    assert plane.state is not None
    cluster = {"server": plane.state.server, "certificate-authority": str(plane.pki.ca_cert)}
    context = {"cluster": "c", "user": "t", **({"namespace": namespace} if namespace else {})}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "t",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "t", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": context}],
    }
    path.write_text(json.dumps(config))
    return path
