"""What the operator's identity may do, as the real API server answers it: the admin may watch Jobs, a service
account only once a Role grants it (the operator then follows Jobs; without it, it does without them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.kubeconfigs import token_kubeconfig
from tests.operator.conftest import Kubectl
from tests.polling import eventually

from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator.controller import Controller
from stashlet.operator.core import access
from stashlet.operator.core.apiclient import ApiClient, new_api_client
from stashlet.operator.settings import OperatorSettings

pytestmark = pytest.mark.cluster


async def test_job_watching_is_allowed_only_where_granted(
    api: ApiClient, akubectl: Kubectl, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    assert await access.allowed(api, "watch", "batch", "jobs", namespace)
    assert await access.allowed(api, "list", "batch", "jobs", None)
    await akubectl("create", "serviceaccount", "op", "-n", namespace)
    token = (await akubectl("create", "token", "op", "-n", namespace)).strip()
    restricted = await new_api_client(str(token_kubeconfig(control_plane, token, tmp_path / "kubeconfig")))
    try:
        assert not await access.allowed(restricted, "watch", "batch", "jobs", namespace)
        controller = Controller(restricted, OperatorSettings(namespaces=(namespace,)))
        assert not await controller.maywatch_jobs()
        controller.watch_jobs = False  # what run() does with the answer
        assert [w for w, _, _ in controller.follows() if w.startswith("Job/")] == []
        await akubectl(
            "create", "role", "jobs", "-n", namespace, "--verb=list,watch", "--resource=jobs.batch"
        )
        await akubectl(
            "create",
            "rolebinding",
            "jobs",
            "-n",
            namespace,
            "--role=jobs",
            f"--serviceaccount={namespace}:op",
        )

        async def granted() -> bool:
            return await access.allowed(restricted, "watch", "batch", "jobs", namespace)

        await eventually(granted, what="the Role to take effect", timeout=15)
        assert await controller.maywatch_jobs()
        controller.watch_jobs = True
        assert [w for w, _, _ in controller.follows() if w.startswith("Job/")] == [f"Job/{namespace}"]
    finally:
        await restricted.close()
