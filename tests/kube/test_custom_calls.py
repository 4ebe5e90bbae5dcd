"""Which request StashClient sends for a namespaced and a cluster-scoped kind: method, path, query, body."""

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.common import KubeObject
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.kube.custom import StashClient
from stashlet.kube.rest import KubeApi, Query

Sent = tuple[str, str, dict[str, Any], Any, str | None]

SESSION = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "BackupSession",
    "metadata": {"name": "s", "namespace": "ns"},
    "spec": {"invoker": {"kind": "BackupConfiguration", "name": "bc"}},
}
BLUEPRINT = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "BackupBlueprint",
    "metadata": {"name": "bp"},
    "spec": {"backend": {"local": {"mountPath": "/r"}}, "retentionPolicy": {"name": "p", "prune": True}},
}


class Recorder:
    """A :class:`KubeApi` that records every request and answers with ``reply``."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.sent: list[Sent] = []

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str | None = None,
        within: float | None = None,
    ) -> dict[str, Any]:
        self.sent.append((method, path, dict(query or {}), body, content_type))
        return self.reply

    async def stream(
        self, path: str, query: Query | None = None, *, accept: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        raise AssertionError("no watch here")
        yield b""  # pragma: no cover - makes this a generator

    async def close(self) -> None:
        pass


def stash_with(reply: dict[str, Any]) -> tuple[StashClient, Recorder]:
    recorder = Recorder(reply)
    api: KubeApi = recorder
    return StashClient(api), recorder


MERGE = "application/merge-patch+json"
BACKGROUND = {"propagationPolicy": "Background"}


async def test_namespaced_kind_requests_carry_the_namespace() -> None:
    """Every verb on a namespaced kind goes to ``/apis/<group>/<version>/namespaces/<ns>/<plural>``."""
    stash, api = stash_with(SESSION)
    obj = BackupSession.from_dict(SESSION)
    assert (await stash.get(BackupSession, "ns", "s")).metadata.name == "s"
    assert (await stash.create(obj)).metadata.namespace == "ns"
    await stash.patch(BackupSession, "ns", "s", {"metadata": {}})
    await stash.delete(BackupSession, "ns", "s")
    await stash.replace_status(obj)
    base = "/apis/stash.appscode.com/v1beta1/namespaces/ns/backupsessions"
    assert api.sent == [
        ("GET", f"{base}/s", {}, None, None),
        ("POST", base, {}, SESSION, None),
        ("PATCH", f"{base}/s", {}, {"metadata": {}}, MERGE),
        ("DELETE", f"{base}/s", BACKGROUND, None, None),
        ("PUT", f"{base}/s/status", {}, SESSION, None),
    ]


async def test_cluster_scoped_kind_requests_have_no_namespace() -> None:
    """Every verb on a cluster-scoped kind goes to the cluster path, whatever namespace is passed."""
    stash, api = stash_with(BLUEPRINT)
    obj = BackupBlueprint.from_dict(BLUEPRINT)
    await stash.get(BackupBlueprint, "ignored", "bp")
    await stash.create(obj)
    await stash.patch(BackupBlueprint, None, "bp", {"spec": {}})
    await stash.delete(BackupBlueprint, None, "bp")
    await stash.replace_status(obj)
    base = "/apis/stash.appscode.com/v1beta1/backupblueprints"
    assert api.sent == [
        ("GET", f"{base}/bp", {}, None, None),
        ("POST", base, {}, BLUEPRINT, None),
        ("PATCH", f"{base}/bp", {}, {"spec": {}}, MERGE),
        ("DELETE", f"{base}/bp", BACKGROUND, None, None),
        ("PUT", f"{base}/bp/status", {}, BLUEPRINT, None),
    ]


G = "/apis/stash.appscode.com/v1beta1"


@pytest.mark.parametrize(
    ("model", "namespace", "path"),
    [
        (BackupSession, "ns", f"{G}/namespaces/ns/backupsessions"),
        (BackupSession, None, f"{G}/backupsessions"),
        (BackupSession, "", f"{G}/backupsessions"),
        (BackupBlueprint, "ns", f"{G}/backupblueprints"),
    ],
)
async def test_lists_are_namespaced_only_for_a_namespaced_kind_in_a_namespace(
    model: type[BackupSession | BackupBlueprint], namespace: str | None, path: str
) -> None:
    """``list`` and ``list_fn`` list one namespace; all when none is given or the kind is cluster-wide."""
    stash, api = stash_with({"items": [SESSION if model is BackupSession else BLUEPRINT]})
    listed = await stash.list(model, namespace, label_selector="a=b")
    assert [type(item) for item in listed] == [model]
    assert api.sent == [("GET", path, {"labelSelector": "a=b"}, None, None)]
    collection = stash.list_fn(model, namespace)
    assert (collection.path, dict(collection.query)) == (path, {})
    assert collection.api is api


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (Repository, "/apis/stash.appscode.com/v1alpha1/namespaces/ns/repositories"),
        (BackupConfiguration, f"{G}/namespaces/ns/backupconfigurations"),
        (BackupSession, f"{G}/namespaces/ns/backupsessions"),
        (RestoreSession, f"{G}/namespaces/ns/restoresessions"),
        (BackupBlueprint, f"{G}/backupblueprints"),
    ],
)
def test_every_stash_kind_has_its_collection(model: type[KubeObject], path: str) -> None:
    """The table of served kinds (keyed by the model's name, so a process loads only its models) knows
    every stash kind, with its API version and scope."""
    stash, _ = stash_with({})
    assert stash.list_fn(model, "ns").path == path
