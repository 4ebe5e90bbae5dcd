"""The restic Pod of ``kubectl stash`` takes the runtime env of the configuration using the Repository
(``spec.runtimeSettings.container.env``/``envFrom``), on the real API server: the Pod as created is read
back from the API while the plugin waits for it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.kubectl_stash.conftest import configuration

from stashlet.agent.repo_command import ENV_REQUEST
from stashlet.api.repository import Repository
from stashlet.kube.config import kubeconfig_config
from stashlet.kube.rest import RestClient
from stashlet.kubectl_stash.errors import PluginError
from stashlet.kubectl_stash.repositories import read_repository
from stashlet.kubectl_stash.restic_access import PodAccess, request_for
from stashlet.kubectl_stash.runtime_env import runtime_for

pytestmark = pytest.mark.cluster

EMULATOR = {"name": "STORAGE_EMULATOR_HOST", "value": "http://gcs.storage.svc:4443"}
PROXY = {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}
FROM = [{"configMapRef": {"name": "backend-endpoints"}}]


def _repository(kubectl: Any, namespace: str) -> None:
    kubectl("create", "secret", "generic", "repo-secret", "-n", namespace, "--from-literal=RESTIC_PASSWORD=x")
    body = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": namespace},
        "spec": {"backend": {"gcs": {"bucket": "b", "prefix": "p"}, "storageSecretName": "repo-secret"}},
    }
    kubectl("apply", "-f", "-", input_obj=body)


def _config(kubectl: Any, namespace: str, name: str, container: dict[str, Any], repo: str = "repo") -> None:
    body = configuration(name, namespace, runtimeSettings={"container": container})
    body["spec"]["repository"] = {"name": repo}
    kubectl("apply", "-f", "-", input_obj=body)


async def _with_api(control_plane: Any, work: Any) -> Any:
    async with RestClient(kubeconfig_config([control_plane.kubeconfig])) as api:
        return await work(api)


async def _runtime(control_plane: Any, namespace: str, backupconfig: str | None = None) -> dict[str, Any]:
    async def work(api: RestClient) -> dict[str, Any]:
        repo = await read_repository(api, namespace, "repo")
        return await runtime_for(api, repo, backupconfig)

    result: dict[str, Any] = await _with_api(control_plane, work)
    return result


def test_the_pod_takes_the_env_of_the_configuration_using_the_repository(
    control_plane: Any, kubectl: Any, namespace: str
) -> None:
    _repository(kubectl, namespace)
    _config(
        kubectl,
        namespace,
        "users-repo",
        {"env": [EMULATOR, {"name": ENV_REQUEST, "value": "x"}], "envFrom": FROM},
    )
    _config(kubectl, namespace, "other-repo", {"env": [PROXY]}, repo="elsewhere")
    created: list[dict[str, Any]] = []

    def read_back(name: str) -> None:
        out = kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
        created.append(json.loads(out))

    async def work(api: RestClient) -> None:
        repo: Repository = await read_repository(api, namespace, "repo")
        access = PodAccess(api, image="stashlet/agent:test", timeout=30.0, poll=0.2, on_pod=read_back)
        # an image no registry has: the pod never runs, the plugin says so (or times out without a node)
        with pytest.raises(PluginError, match=r"cannot pull image|did not finish"):
            await access.perform(repo, request_for(repo, "snapshots"), lambda line: None)

    asyncio.run(_with_api(control_plane, work))
    [pod] = created
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STORAGE_EMULATOR_HOST"] == EMULATOR["value"]
    assert "HTTPS_PROXY" not in env  # the other configuration's repository is another one
    assert json.loads(env[ENV_REQUEST])["operation"] == "snapshots"  # the user's entry does not replace it
    assert [e["name"] for e in container["env"]].count(ENV_REQUEST) == 1
    assert container["envFrom"] == FROM


def test_configurations_that_disagree_are_named_and_one_is_chosen(
    control_plane: Any, kubectl: Any, namespace: str
) -> None:
    _repository(kubectl, namespace)
    assert asyncio.run(_runtime(control_plane, namespace)) == {}
    _config(kubectl, namespace, "first", {"env": [EMULATOR]})
    assert asyncio.run(_runtime(control_plane, namespace)) == {"env": [EMULATOR]}
    _config(kubectl, namespace, "second", {"env": [EMULATOR]})
    assert asyncio.run(_runtime(control_plane, namespace)) == {"env": [EMULATOR]}
    _config(kubectl, namespace, "third", {"env": [PROXY], "resources": {"limits": {"cpu": "1"}}})
    with pytest.raises(PluginError, match=r"\(first, second, third\).*--backupconfig"):
        asyncio.run(_runtime(control_plane, namespace))
    assert asyncio.run(_runtime(control_plane, namespace, "third")) == {"env": [PROXY]}
    _config(kubectl, namespace, "unrelated", {}, repo="elsewhere")
    with pytest.raises(PluginError, match=r"unrelated .*does not use .*spec\.repository"):
        asyncio.run(_runtime(control_plane, namespace, "unrelated"))
    with pytest.raises(PluginError, match=r"missing not found \(--backupconfig\)"):
        asyncio.run(_runtime(control_plane, namespace, "missing"))
