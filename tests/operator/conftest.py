"""Fixtures for the operator's tests: object factories (no server), and the operator on the real cluster.

The cluster fixtures run the operator in-process (``Controller`` as an asyncio task) with the admin's
credentials, as the one component that legitimately has broad rights, watching only the test's own
namespaces. Pods (the trigger Job's, the injected workloads') run on the session's real node with their own
service-account token, never as the admin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import yaml
from tests.polling import eventually

from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.kube.watch import WatchEvent, WatchSettings
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator.controller import Controller
from stashlet.operator.core.apiclient import ApiClient, new_api_client
from stashlet.operator.core.loop import Follow
from stashlet.operator.settings import OperatorSettings

# ---------------------------------------------------------------- object factories (no server)


def seed_storage_secret(namespace: str) -> dict[str, Any]:
    """The Secret seed 003 makes with ``kubectl create secret generic gcs-secret --from-file=...``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "gcs-secret", "namespace": namespace},
        "stringData": {
            "RESTIC_PASSWORD": "changeit",
            "GOOGLE_PROJECT_ID": "your-project-id",
            "GOOGLE_SERVICE_ACCOUNT_JSON_KEY": "{}",
        },
    }


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A copy of ``obj`` moved to ``namespace``."""
    moved = copy.deepcopy(obj)
    moved["metadata"]["namespace"] = namespace
    return moved


def deployment(
    name: str = "stash-demo", namespace: str = "demo", volumes: tuple[str, ...] = ("source-data",)
) -> dict[str, Any]:
    """A Deployment shaped like seed 003's (one container mounting ``volumes``, each an emptyDir)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "busybox",
                            "image": "busybox",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "3000"],
                            "volumeMounts": [{"name": v, "mountPath": f"/source/{v}"} for v in volumes],
                        }
                    ],
                    "volumes": [{"name": v, "emptyDir": {}} for v in volumes],
                },
            },
        },
    }


def repository(
    name: str = "gcs-repo",
    namespace: str = "demo",
    secret: str = "gcs-secret",  # noqa: S107 - a Secret name
    **spec: Any,
) -> dict[str, Any]:
    """A GCS Repository like seed 003's; ``spec`` adds e.g. ``usagePolicy``."""
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"backend": {"gcs": {"bucket": "b", "prefix": "/p"}, "storageSecretName": secret}, **spec},
    }


def backup_configuration(
    name: str = "pause-backup",
    namespace: str = "demo",
    target: str = "stash-demo",
    kind: str = "Deployment",
    **spec: Any,
) -> dict[str, Any]:
    """Seed 003's BackupConfiguration; ``spec`` overrides or adds fields. The schedule is once a year
    (the seed's is ``*/5``): no test here waits for a firing, and one during a test would add a session
    that test did not make."""
    body: dict[str, Any] = {
        "repository": {"name": "gcs-repo"},
        "schedule": "0 0 1 1 *",
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
            "paths": ["/source/data"],
        },
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    }
    body.update(spec)
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 1},
        "spec": body,
    }


class Factories:
    """The factories above, for test modules (which cannot import the conftest)."""

    seed_storage_secret = staticmethod(seed_storage_secret)
    in_namespace = staticmethod(in_namespace)
    deployment = staticmethod(deployment)
    repository = staticmethod(repository)
    backup_configuration = staticmethod(backup_configuration)


@pytest.fixture(scope="session")
def make() -> Factories:
    """Object factories: ``make.deployment()``, ``make.repository()``, ``make.backup_configuration()`` ..."""
    return Factories()


@pytest.fixture
def bc() -> BackupConfiguration:
    """Seed 003's BackupConfiguration in ``demo``, as a model."""
    return BackupConfiguration.from_dict(backup_configuration())


@pytest.fixture
def repo() -> Repository:
    """Seed 003's Repository in ``demo``, as a model."""
    return Repository.from_dict(repository())


# ---------------------------------------------------------------- the real cluster


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[ApiClient]:
    """An ApiClient with the admin kubeconfig."""
    api_client = await new_api_client(str(control_plane.kubeconfig))
    try:
        yield api_client
    finally:
        await api_client.close()


class Kubectl:
    """The pinned kubectl as the admin, run without blocking the event loop (the operator shares it)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.argv = [str(tools.ensure("kubectl")), f"--kubeconfig={plane.kubeconfig}"]

    async def __call__(self, *args: str, input_obj: Any = None, check: bool = True) -> str:
        """Run kubectl; ``input_obj`` (an object or a list) goes to stdin as YAML. Returns stdout."""
        text = None
        if input_obj is not None:
            objs = input_obj if isinstance(input_obj, list) else [input_obj]
            text = yaml.safe_dump_all(objs, sort_keys=False).encode()
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(text), 120)
        if check and process.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({process.returncode}): {err.decode().strip()}"
            )
        return out.decode()

    async def json(self, *args: str) -> Any:
        """``kubectl <args> -o json``, parsed."""
        return json.loads(await self(*args, "-o", "json"))

    async def items(self, resource: str, namespace: str, *selector: str) -> list[dict[str, Any]]:
        """The items of ``kubectl get <resource> -n <namespace> [-l selector]``."""
        found: list[dict[str, Any]] = (await self.json("get", resource, "-n", namespace, *selector))["items"]
        return found

    async def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        out = await self("get", resource, name, "-n", namespace, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The core/v1 events about the object called ``name``."""
        return await self.items("events", namespace, f"--field-selector=involvedObject.name={name}")

    async def event(
        self,
        namespace: str,
        name: str,
        matches: Callable[[dict[str, Any]], bool],
        *,
        what: str,
        within: float = 30,
    ) -> dict[str, Any]:
        """The first event about ``name`` that ``matches``, waited for: the operator and the agents record an
        event after the status write a test has just seen, never before it."""
        seen: list[dict[str, Any]] = []

        async def probe() -> dict[str, Any] | None:
            seen[:] = await self.events(namespace, name)
            return next((e for e in seen if matches(e)), None)

        found: dict[str, Any] = await eventually(probe, timeout=within, what=what, log=lambda: repr(seen))
        return found

    async def wait_gone(self, resource: str, namespace: str, name: str, *, within: float = 60) -> None:
        """Wait until the object no longer exists (deleted, or collected as garbage)."""

        async def probe() -> bool:
            return await self.get(resource, namespace, name) is None

        await eventually(probe, timeout=within, what=f"{resource} {namespace}/{name} to be gone")

    async def wait_phase(
        self, namespace: str, name: str, phase: str, *, within: float = 30
    ) -> dict[str, Any]:
        """Wait until BackupConfiguration ``name`` reports ``phase`` for its current generation."""

        async def probe() -> dict[str, Any] | None:
            bc = await self.get("backupconfiguration", namespace, name)
            status = (bc or {}).get("status") or {}
            if (
                bc
                and status.get("phase") == phase
                and status.get("observedGeneration") == bc["metadata"]["generation"]
            ):
                return bc
            return None

        found: dict[str, Any] = await eventually(
            probe, timeout=within, what=f"{namespace}/{name} to be {phase}"
        )
        return found


@pytest.fixture(scope="session")
def akubectl(control_plane: ControlPlane) -> Kubectl:
    """Async kubectl as the admin."""
    return Kubectl(control_plane)


class ObservedController(Controller):
    """The operator's Controller, also remembering the last ``resourceVersion`` each of its watches
    delivered per object: what lets a test know that the operator has seen an object as it is now."""

    def setup(self) -> None:
        """The Controller's state, and the versions delivered so far."""
        super().setup()
        self.delivered: dict[tuple[str, str], str] = {}
        """(kind, ``namespace/name``) -> the ``resourceVersion`` of the last event handed to the operator."""
        self.handled: collections.Counter[str] = collections.Counter()
        """How many times each queue item was handled."""

    async def handle(self, item: str) -> None:
        """The Controller's handling, counted."""
        self.handled[item] += 1
        await super().handle(item)

    def follows(self) -> list[Follow]:
        """The Controller's streams, each handler followed by a note of the version it was given."""
        return [(what, stream, self._noting(what, on_event)) for what, stream, on_event in super().follows()]

    def _noting(self, what: str, on_event: Callable[[WatchEvent], None]) -> Callable[[WatchEvent], None]:
        kind = what.partition("/")[0]

        def handle(event: WatchEvent) -> None:
            on_event(event)  # first: whatever it enqueues is in the queue once the version is noted
            version = (event.object.get("metadata") or {}).get("resourceVersion")
            self.delivered[(kind, event.key)] = str(version)

        return handle


class OperatorRunner:
    """Starts and stops the in-process operator over chosen namespaces."""

    def __init__(self, api: ApiClient, kubectl: Kubectl) -> None:
        self.api = api
        self.kubectl = kubectl
        self.tasks: list[tuple[asyncio.Task[None], tuple[str, ...]]] = []

    async def start(self, *namespaces: str, **overrides: Any) -> ObservedController:
        """Start an operator watching ``namespaces``; returns once all its watches have listed."""
        settings = OperatorSettings(namespaces=namespaces, **overrides)
        controller = ObservedController(self.api, settings, watch_settings=WatchSettings(server_timeout=60))
        task = asyncio.create_task(controller.run())
        self.tasks.append((task, namespaces))
        await asyncio.wait_for(controller.all_synced.wait(), 30)
        return controller

    async def rested(
        self, controller: ObservedController, namespace: str, *objects: str, within: float = 30
    ) -> None:
        """Wait until ``controller`` has been handed each of ``objects`` (``Kind/name`` in ``namespace``)
        at its current ``resourceVersion`` and has nothing left to do: nothing waiting, running or due
        for a retry. Whatever the operator would do about those objects as they are, it has done; a
        test then reads them to prove that it did nothing more (no fixed sleep)."""

        async def at_rest() -> bool:
            for obj in objects:
                kind, _, name = obj.partition("/")
                current = await self.kubectl.get(kind.lower(), namespace, name)
                assert current is not None, f"{kind} {namespace}/{name} does not exist"
                seen = controller.delivered.get((kind, f"{namespace}/{name}"))
                if seen != current["metadata"]["resourceVersion"]:
                    return False
            return controller.queue.pending() == 0

        await eventually(
            at_rest, timeout=within, what=f"the operator to have seen {', '.join(objects)} and be idle"
        )

    async def stop(self, *, cleanup: bool = True) -> None:
        """Stop the operators; with ``cleanup`` delete the configurations first, so their finalizers run."""
        tasks, self.tasks = self.tasks, []
        for task, namespaces in tasks:
            try:
                if cleanup:
                    await self._finalize(task, namespaces)
            finally:
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=30)
                if not done:
                    stuck = [t.get_stack() for t in asyncio.all_tasks() if not t.done()]
                    pytest.fail(f"the operator did not stop within 30 s of being cancelled: {stuck}")
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _finalize(self, task: asyncio.Task[None], namespaces: tuple[str, ...]) -> None:
        """Delete the configurations in ``namespaces`` and wait while the running operator lets them go."""
        for ns in namespaces:
            await self.kubectl(
                "delete", "backupconfigurations", "--all", "-n", ns, "--wait=false", check=False
            )

        async def finalized() -> bool:
            if task.done():  # an operator that has ended finalizes nothing more
                return True
            return not any([await self.kubectl.items("backupconfigurations", ns) for ns in namespaces])

        await eventually(finalized, timeout=20, what=f"the configurations in {', '.join(namespaces)} to go")


@pytest.fixture
async def operator(api: ApiClient, akubectl: Kubectl, namespace: str) -> AsyncIterator[OperatorRunner]:
    """Run the operator in-process: ``await operator.start(namespace, ...)``; stopped after the test.

    It takes ``namespace`` so that the namespace outlives it: the finalizers run before it goes.
    """
    runner = OperatorRunner(api, akubectl)
    try:
        yield runner
    finally:
        await runner.stop()


@pytest.fixture
def second_namespace(control_plane: ControlPlane, kubectl: Callable[..., Any]) -> Iterator[str]:
    """Another fresh namespace (for a Repository that lives elsewhere)."""
    name = f"r-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)
