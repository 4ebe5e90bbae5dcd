"""What the key-rotation tests of every store share: seed 003's sidecar backing up by hand-made sessions,
the storage Secret's volume in its pod as the kubelet writes it, and the agent's log of the change.

A store's rotation test makes its keys, applies a new Secret and revokes the old keys its own way; the
rest (is it the same pod and containers afterwards, when did the kubelet write the Secret, did the agent
notice) is here.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.manifests import backup_session
from e2e.seed import APP, CONFIGURATION

from stashlet.localcluster.cluster import LocalCluster

KUBELET_STAMP = "..%Y_%m_%d_%H_%M_%S."
"""How the kubelet names each write of a Secret volume, the folder ``..data`` links to: the UTC second
of the write, then random digits."""


def containers(pod: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Each container of ``pod``: its container id and restart count."""
    return {
        c["name"]: (c.get("containerID", ""), c["restartCount"]) for c in pod["status"]["containerStatuses"]
    }


def kubelet_write(volume: Path) -> dt.datetime | None:
    """When the kubelet wrote the Secret volume's current version (from the name ``..data`` links to)."""
    try:
        target = (volume / "..data").readlink().name
    except OSError:
        return None
    return dt.datetime.strptime(target[: len("..2006_01_02_15_04_05.")], KUBELET_STAMP).replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Sidecar:
    """Seed 003's Deployment, rolled out with its sidecar: its one pod as it was then."""

    kubectl: Any
    helpers: Any
    namespace: str
    pod: dict[str, Any]

    @classmethod
    async def ready(cls, kubectl: Any, helpers: Any, namespace: str) -> Sidecar:
        """Once ``pause-backup`` is Ready and ``stash-demo`` rolled out with the sidecar."""

        def phase() -> str | None:
            found = helpers.get(kubectl, "backupconfiguration", CONFIGURATION, "-n", namespace)
            return (found.get("status") or {}).get("phase")

        await helpers.until(lambda: phase() == "Ready", timeout=60, what=f"{CONFIGURATION} Ready")
        [pod_name] = await helpers.rolled_out(kubectl, namespace, APP)
        return cls(kubectl, helpers, namespace, helpers.get(kubectl, "pod", pod_name, "-n", namespace))

    @property
    def name(self) -> str:
        """The pod's name."""
        return str(self.pod["metadata"]["name"])

    async def backed_up(self, session: str) -> None:
        """A hand-made BackupSession ``session`` of ``pause-backup``: it Succeeds."""
        kubectl, get = self.kubectl, self.helpers.get
        kubectl("apply", "-f", "-", input_obj=backup_session(self.namespace, session, CONFIGURATION))

        def ended() -> dict[str, Any] | None:
            status = get(kubectl, "backupsession", session, "-n", self.namespace).get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status = await self.helpers.until(ended, timeout=120, what=session)
        assert status["phase"] == "Succeeded", json.dumps(status)

    def unrestarted(self) -> bool:
        """Whether the pod is the same one, with the same containers, none restarted."""
        now = self.helpers.get(self.kubectl, "pod", self.name, "-n", self.namespace)
        return bool(now["metadata"]["uid"] == self.pod["metadata"]["uid"]) and containers(now) == containers(
            self.pod
        )

    def secret_volume(self, node: LocalCluster, key: str) -> Path:
        """The pod's Secret volume (in the kubelet's folder) holding the file ``key``."""
        assert node.node is not None
        uid = str(self.pod["metadata"]["uid"])
        volumes = node.node.paths.kubelet_root / "pods" / uid / "volumes" / "kubernetes.io~secret"
        [volume] = [v for v in volumes.iterdir() if (v / key).is_file()]
        return volume

    def log(self) -> str:
        """The sidecar's log, as ``kubectl logs`` gives it."""
        return str(self.kubectl("logs", "-n", self.namespace, self.name, "-c", "stash").stdout)

    async def secret_change(self, secret: str) -> dict[str, Any]:
        """The agent's log line of the mounted Secret ``secret`` changing (waited for)."""

        def changes() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]
            return [
                line
                for line in lines
                if line.get("msg", "").startswith("mounted storage Secret changed")
                and line.get("secret") == secret
            ]

        what = "the agent's log of the Secret's change"
        [change] = await self.helpers.until(changes, timeout=30, what=what)
        return dict(change)


@dataclass(frozen=True)
class KubeletWrite:
    """A Secret applied, and when its new version reached a pod's volume."""

    applied: dt.datetime
    written: dt.datetime
    seen_after: float
    """Seconds from the apply until this host saw the new file."""

    def report(self, noticed: dt.datetime) -> str:
        """The figures the issue's report quotes, with when the agent logged the change."""
        return (
            f"Secret applied {self.applied:%H:%M:%S.%f}; kubelet wrote it {self.written:%H:%M:%S} "
            f"({(self.written - self.applied).total_seconds():+.1f} s; seen on the host after "
            f"{self.seen_after:.1f} s); the agent logged the change at {noticed:%H:%M:%S.%f} "
            f"({(noticed - self.applied).total_seconds():+.1f} s)"
        )


async def rewritten(helpers: Any, volume: Path, key: str, value: str, applied: dt.datetime) -> KubeletWrite:
    """Wait for the kubelet to write ``value`` into the file ``key`` of ``volume`` (a Secret applied at
    ``applied``); when it did."""
    started = time.monotonic() - (dt.datetime.now(dt.UTC) - applied).total_seconds()
    await helpers.until(
        lambda: (volume / key).read_text() == value,
        timeout=150,
        interval=1,
        what="the kubelet writing the new Secret into the pod's volume",
    )
    seen = time.monotonic() - started
    written = kubelet_write(volume)
    assert written is not None
    return KubeletWrite(applied, written, seen)
