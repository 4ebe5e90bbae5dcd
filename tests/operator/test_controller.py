"""The controller's event routing, without a server: what enqueues a configuration, and what does not."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from stashlet.kube.watch import ADDED, DELETED, MODIFIED, WatchEvent
from stashlet.operator.controller import CONFIG_PREFIX, HISTORY_PREFIX, Controller, fingerprint
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.loop import LAST_APPLIED, lean
from stashlet.operator.settings import OperatorSettings


@pytest.fixture
async def controller() -> AsyncIterator[Controller]:
    api = ApiClient(client.Configuration())
    try:
        yield Controller(api, OperatorSettings())
    finally:
        await api.close()


def config_event(kind: str, generation: int, **meta: Any) -> WatchEvent:
    obj = {
        "metadata": {"name": "bc", "namespace": "demo", "generation": generation, **meta},
        "spec": {"backupHistoryLimit": 1},
    }
    return WatchEvent(kind, obj)


def queued(controller: Controller) -> set[str]:
    return set(controller.queue._waiting)


async def test_spec_changes_enqueue_and_status_writes_do_not(controller: Controller) -> None:
    """ADDED and a new generation enqueue; a MODIFIED with the same generation (a status write) does not."""
    controller._on_config(config_event(ADDED, 1))
    assert queued(controller) == {CONFIG_PREFIX + "demo/bc"}
    controller.queue._waiting.clear()
    controller._on_config(config_event(MODIFIED, 1))
    assert queued(controller) == set()
    controller._on_config(config_event(MODIFIED, 2))
    assert queued(controller) == {CONFIG_PREFIX + "demo/bc"}


async def test_a_deletion_request_enqueues(controller: Controller) -> None:
    """Setting deletionTimestamp (the finalizer's cue) enqueues even without a new generation."""
    controller._on_config(config_event(ADDED, 1))
    controller.queue._waiting.clear()
    controller._on_config(config_event(MODIFIED, 1, deletionTimestamp="2024-01-01T00:00:00Z"))
    assert queued(controller) == {CONFIG_PREFIX + "demo/bc"}


async def test_dependencies_enqueue_their_dependents_only(controller: Controller) -> None:
    """A change to a Secret a configuration depends on enqueues it; an unrelated Secret does not."""
    controller._index("demo/bc", {("Secret", "demo", "gcs-secret")})
    handle = controller._on_dependency("Secret")
    handle(WatchEvent(MODIFIED, {"metadata": {"name": "other", "namespace": "demo", "resourceVersion": "5"}}))
    assert queued(controller) == set()
    handle(
        WatchEvent(
            MODIFIED, {"metadata": {"name": "gcs-secret", "namespace": "demo", "resourceVersion": "6"}}
        )
    )
    assert queued(controller) == {CONFIG_PREFIX + "demo/bc"}
    controller._index("demo/bc", set())
    controller.queue._waiting.clear()
    handle(WatchEvent(DELETED, {"metadata": {"name": "gcs-secret", "namespace": "demo"}}))
    assert queued(controller) == set()


async def test_what_a_reconcile_wrote_does_not_come_back_as_a_change(controller: Controller) -> None:
    """A workload's watch event carrying the generation the reconcile itself wrote is not a new change."""
    controller._index("demo/bc", {("Deployment", "demo", "app")})
    controller._fingerprints[("Deployment", "demo/app")] = fingerprint("Deployment", {"generation": 2})
    handle = controller._on_dependency("Deployment")
    handle(WatchEvent(MODIFIED, {"metadata": {"name": "app", "namespace": "demo", "generation": 2}}))
    assert queued(controller) == set()
    handle(WatchEvent(MODIFIED, {"metadata": {"name": "app", "namespace": "demo", "generation": 3}}))
    assert queued(controller) == {CONFIG_PREFIX + "demo/bc"}


async def test_a_finished_session_asks_for_pruning_once(controller: Controller) -> None:
    """A session turning Succeeded enqueues its configuration's history once; later updates do not."""
    session = {
        "metadata": {"name": "bc-1", "namespace": "demo", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"invoker": {"kind": "BackupConfiguration", "name": "bc"}},
        "status": {"phase": "Running"},
    }
    controller._on_session(WatchEvent(ADDED, session))
    assert queued(controller) == set()
    session["status"] = {"phase": "Succeeded"}
    controller._on_session(WatchEvent(MODIFIED, session))
    assert queued(controller) == {HISTORY_PREFIX + "demo/bc"}
    controller.queue._waiting.clear()
    controller._on_session(WatchEvent(MODIFIED, session))
    assert queued(controller) == set()


def test_watches_keep_no_managed_fields_nor_last_applied_copies() -> None:
    """What the operator's watches hold of an object: all but ``managedFields`` and kubectl's
    last-applied copy, which no handler reads and would be held for every object watched."""
    obj = {
        "metadata": {
            "name": "app",
            "namespace": "demo",
            "generation": 2,
            "labels": {"app": "web"},
            "annotations": {LAST_APPLIED: "{...}", "stash.appscode.com/backup-blueprint": "bp"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"replicas": 1},
    }
    assert lean(obj) == {
        "metadata": {
            "name": "app",
            "namespace": "demo",
            "generation": 2,
            "labels": {"app": "web"},
            "annotations": {"stash.appscode.com/backup-blueprint": "bp"},
        },
        "spec": {"replicas": 1},
    }
