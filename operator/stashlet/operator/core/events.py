"""Recording the events a reconcile decided on, each from the component Stash names as its source: async."""

from __future__ import annotations

from stashlet.api.common import KubeObject
from stashlet.kube.events import EventRecorder, EventType
from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.conditions import EventSpec


class Events:
    """One :class:`~stashlet.kube.events.EventRecorder` per source, made on first use."""

    def __init__(self, api: ApiClient) -> None:
        """Record through ``api`` (the operator's own identity)."""
        self.api = api
        self._recorders: dict[str, EventRecorder] = {}

    async def emit(self, obj: KubeObject, event: EventSpec) -> None:
        """Record ``event`` on ``obj``."""
        if event.source not in self._recorders:
            self._recorders[event.source] = EventRecorder(self.api, event.source)
        recorder = self._recorders[event.source]
        kind: EventType = "Warning" if event.type == "Warning" else "Normal"
        await recorder.record(obj.to_dict(), kind, event.reason, event.message)
