"""The chart's admission policies on the test cluster, and kubectl as a ServiceAccount's real token."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.kubeconfigs import token_kubeconfig

from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane

CHART = Path(__file__).resolve().parents[3] / "charts" / "stashlet"
POLICY_TEMPLATE = "templates/admission-policy.yaml"


def render_admission_policies(home: Path) -> list[dict[str, object]]:
    """The chart's ValidatingAdmissionPolicies and bindings, as ``helm template`` renders them (release
    ``stashlet``), with helm's state kept in ``home``."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    args = [
        "template",
        "stashlet",
        str(CHART),
        "--namespace",
        "stashlet-system",
        "--show-only",
        POLICY_TEMPLATE,
    ]
    out = subprocess.run(
        [str(tools.ensure("helm")), *args], capture_output=True, text=True, env=env, check=True, timeout=120
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def admission_policies(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The chart's admission policies applied to the cluster (as ``helm install`` would), removed after
    the session."""
    objects = render_admission_policies(tmp_path_factory.mktemp("helm-home"))
    text = yaml.safe_dump_all(objects, sort_keys=False)
    control_plane.kubectl("apply", "--server-side", "-f", "-", input_text=text)
    try:
        yield
    finally:
        control_plane.kubectl("delete", "--ignore-not-found", "-f", "-", input_text=text, check=False)


@dataclass(frozen=True)
class TokenKubectl:
    """kubectl as the holder of one token (no client certificate: the token alone authenticates)."""

    binary: Path
    kubeconfig: Path

    async def run(self, *args: str, stdin: str | None = None) -> tuple[int, str]:
        """Run kubectl; the exit code and stdout plus stderr."""
        process = await asyncio.create_subprocess_exec(
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), 60)
        assert process.returncode is not None
        return process.returncode, out.decode()


def token_kubectl(plane: ControlPlane, token: str, namespace: str, path: Path) -> TokenKubectl:
    """kubectl presenting ``token`` to the cluster's API server (verified with the cluster's CA)."""
    token_kubeconfig(plane, token, path, namespace)
    return TokenKubectl(tools.ensure("kubectl"), path)
