"""Which workloads carry an owner's label, as the workload watches last saw them: pure.

An agent container's owner (a BackupConfiguration, a RestoreSession) labels every workload it is put
into (:attr:`~stashlet.operator.core.placement.Placement.owner_label`). After putting it into its target,
the placer takes it out of every other workload the owner labelled (the owner may have moved on); asking
the API server that costs a list per workload kind, of every workload of the namespace, for each owner.
The controller's metadata watches of the workload kinds see those labels anyway: this index keeps them,
so the placer asks only for the few workloads it names. Until every workload watch has listed it knows
nothing (:meth:`LabelIndex.carrying` answers None, and the placer lists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Holder = tuple[str, str]
"""A workload that carries the label: (kind, name)."""


def _never() -> bool:
    return False


class LabelIndex:
    """Workloads by the value of each of ``labels`` they carry, per namespace."""

    def __init__(self, labels: Iterable[str]) -> None:
        """Index ``labels`` (owner labels); :attr:`listed` says when the watches have listed."""
        self.labels = tuple(labels)
        self.listed: Callable[[], bool] = _never
        """True once every workload watch has listed (set by the controller that feeds the index)."""
        self._holders: dict[tuple[str, str, str], set[Holder]] = {}
        self._carried: dict[tuple[str, str, str], dict[str, str]] = {}

    def observe(self, kind: str, meta: dict[str, Any], *, gone: bool = False) -> None:
        """Take in a workload of ``kind`` as a watch saw it (its metadata), or that it is ``gone``."""
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
        ident = (kind, namespace, name)
        labels = {} if gone else (meta.get("labels") or {})
        now = {label: str(labels[label]) for label in self.labels if label in labels}
        before = self._carried.pop(ident, {})
        for label, value in before.items():
            holders = self._holders.get((label, namespace, value), set())
            holders.discard((kind, name))
            if not holders:
                self._holders.pop((label, namespace, value), None)
        for label, value in now.items():
            self._holders.setdefault((label, namespace, value), set()).add((kind, name))
        if now:
            self._carried[ident] = now

    def carrying(self, label: str, namespace: str, value: str) -> list[Holder] | None:
        """The workloads of ``namespace`` whose ``label`` is ``value``; None until the watches have listed."""
        if not self.listed():
            return None
        return sorted(self._holders.get((label, namespace, value), set()))
