"""Which CustomObjectsApi call StashClient makes for a namespaced and a cluster-scoped kind, and with what."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from kubernetes_asyncio import client

from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupsession import BackupSession
from stashlet.kube.custom import StashClient

Call = tuple[str, tuple[Any, ...], dict[str, Any]]

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


class FakeCustomObjects:
    """Records every call and answers with ``reply`` (as the generated client would, already decoded)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.calls: list[Call] = []

    def __getattr__(self, method: str) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def record(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls.append((method, args, kwargs))
            return self.reply

        return record


@pytest.fixture
async def offline_api() -> AsyncIterator[client.ApiClient]:
    """An ApiClient that never sends anything: its CustomObjectsApi is replaced by the fake."""
    api = client.ApiClient(client.Configuration())
    try:
        yield api
    finally:
        await api.close()


def stash_with(api: client.ApiClient, reply: dict[str, Any]) -> tuple[StashClient, FakeCustomObjects]:
    stash = StashClient(api)
    fake = FakeCustomObjects(reply)
    stash.custom = cast(client.CustomObjectsApi, fake)
    return stash, fake


G, V1 = "stash.appscode.com", "v1beta1"
MERGE = {"_content_type": "application/merge-patch+json"}
BACKGROUND = {"propagation_policy": "Background"}


async def test_namespaced_kind_calls_carry_the_namespace(offline_api: client.ApiClient) -> None:
    """Every verb on a namespaced kind calls ``*_namespaced_*`` with group, version, namespace, plural."""
    stash, fake = stash_with(offline_api, SESSION)
    obj = BackupSession.from_dict(SESSION)
    assert (await stash.get(BackupSession, "ns", "s")).metadata.name == "s"
    assert (await stash.create(obj)).metadata.namespace == "ns"
    await stash.patch(BackupSession, "ns", "s", {"metadata": {}})
    await stash.delete(BackupSession, "ns", "s")
    await stash.replace_status(obj)
    scope = (G, V1, "ns", "backupsessions")
    assert fake.calls == [
        ("get_namespaced_custom_object", (*scope, "s"), {}),
        ("create_namespaced_custom_object", (*scope, SESSION), {}),
        ("patch_namespaced_custom_object", (*scope, "s", {"metadata": {}}), MERGE),
        ("delete_namespaced_custom_object", (*scope, "s"), BACKGROUND),
        ("replace_namespaced_custom_object_status", (*scope, "s", SESSION), {}),
    ]


async def test_cluster_scoped_kind_calls_have_no_namespace(offline_api: client.ApiClient) -> None:
    """Every verb on a cluster-scoped kind uses the ``*_cluster_*`` call, whatever namespace is passed."""
    stash, fake = stash_with(offline_api, BLUEPRINT)
    obj = BackupBlueprint.from_dict(BLUEPRINT)
    await stash.get(BackupBlueprint, "ignored", "bp")
    await stash.create(obj)
    await stash.patch(BackupBlueprint, None, "bp", {"spec": {}})
    await stash.delete(BackupBlueprint, None, "bp")
    await stash.replace_status(obj)
    scope = (G, V1, "backupblueprints")
    assert fake.calls == [
        ("get_cluster_custom_object", (*scope, "bp"), {}),
        ("create_cluster_custom_object", (*scope, BLUEPRINT), {}),
        ("patch_cluster_custom_object", (*scope, "bp", {"spec": {}}), MERGE),
        ("delete_cluster_custom_object", (*scope, "bp"), BACKGROUND),
        ("replace_cluster_custom_object_status", (*scope, "bp", BLUEPRINT), {}),
    ]


@pytest.mark.parametrize(
    ("model", "namespace", "expected"),
    [
        (BackupSession, "ns", ("list_namespaced_custom_object", (G, V1, "ns", "backupsessions"))),
        (BackupSession, None, ("list_cluster_custom_object", (G, V1, "backupsessions"))),
        (BackupSession, "", ("list_cluster_custom_object", (G, V1, "backupsessions"))),
        (BackupBlueprint, "ns", ("list_cluster_custom_object", (G, V1, "backupblueprints"))),
    ],
)
async def test_lists_are_namespaced_only_for_a_namespaced_kind_in_a_namespace(
    offline_api: client.ApiClient,
    model: type[BackupSession | BackupBlueprint],
    namespace: str | None,
    expected: Any,
) -> None:
    """``list`` and ``list_fn`` list one namespace; all when none is given or the kind is cluster-wide."""
    stash, fake = stash_with(offline_api, {"items": [SESSION if model is BackupSession else BLUEPRINT]})
    listed = await stash.list(model, namespace, label_selector="a=b")
    assert [type(item) for item in listed] == [model]
    await stash.list_fn(model, namespace)(watch=True)
    method, args = expected
    assert fake.calls == [(method, args, {"label_selector": "a=b"}), (method, args, {"watch": True})]
