"""The resource dump's configuration: its params, and the scope a BackupConfiguration asks for.

See :mod:`stashlet.agent.kubedump.dump` for what each scope and param means.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from stashlet.agent.errors import RefuseInput, ReportFailure
from stashlet.agent.kubedump.apiserver import ApiResource
from stashlet.api import names
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import Param, TargetRef

log = logging.getLogger(__name__)

PARAM_LABEL_SELECTOR: Final = "labelSelector"
PARAM_SANITIZE: Final = "sanitize"
PARAM_INCLUDE_DEPENDANTS: Final = "includeDependants"
PARAM_EXCLUDE_RESOURCES: Final = "excludeResources"
KNOWN_PARAMS: Final = frozenset(
    {PARAM_LABEL_SELECTOR, PARAM_SANITIZE, PARAM_INCLUDE_DEPENDANTS, PARAM_EXCLUDE_RESOURCES}
)

ALWAYS_EXCLUDED: Final = frozenset(
    {
        "events",
        "events.events.k8s.io",
        f"{names.BACKUP_SESSIONS}.{names.GROUP}",
        f"{names.RESTORE_SESSIONS}.{names.GROUP}",
    }
)
"""Records, not configuration: never dumped."""

Scope = Literal["cluster", "namespace", "application"]


class DumpError(RefuseInput):
    """The configuration asks for a dump that cannot be made (a bad task parameter, a target that is
    unclear or does not exist); ``reason`` is a condition-style word, the message names the field."""


class DumpFailed(ReportFailure):
    """The dump was started and failed (the API server could not be read, the folder not written);
    ``reason`` is a condition-style word, the message names the cause."""


# --------------------------------------------------------------------------------- options and scope


@dataclass(frozen=True)
class DumpOptions:
    """How to dump: from the task's params; page size and concurrency are tuning, not params."""

    label_selector: str = ""
    sanitize: bool = True
    include_dependants: bool = False
    exclude_resources: frozenset[str] = frozenset()
    page_size: int = 250
    concurrency: int = 4

    def excludes(self, resource: ApiResource) -> bool:
        """True when ``resource`` is left out (always, or by ``excludeResources``)."""
        if resource.qualified in ALWAYS_EXCLUDED:
            return True
        tokens = {resource.name, resource.qualified, resource.kind.lower()}
        return bool(tokens & self.exclude_resources)


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise DumpError(
        f"task param {name}={value!r} is not a boolean (true or false)", reason="InvalidParameter"
    )


def options_from_params(params: Iterable[Param] | None) -> DumpOptions:
    """The dump options from ``task.params``; DumpError names a bad value. Unknown params are logged."""
    values = {p.name: p.value for p in params or []}
    unknown = sorted(values.keys() - KNOWN_PARAMS)
    if unknown:
        log.warning("unknown kubedump task params ignored", extra={"params": unknown})
    excludes = values.get(PARAM_EXCLUDE_RESOURCES, "")
    return DumpOptions(
        label_selector=values.get(PARAM_LABEL_SELECTOR, "").strip(),
        sanitize=_flag(PARAM_SANITIZE, values[PARAM_SANITIZE]) if PARAM_SANITIZE in values else True,
        include_dependants=(
            _flag(PARAM_INCLUDE_DEPENDANTS, values[PARAM_INCLUDE_DEPENDANTS])
            if PARAM_INCLUDE_DEPENDANTS in values
            else False
        ),
        exclude_resources=frozenset(t.strip().lower() for t in excludes.split(",") if t.strip()),
    )


@dataclass(frozen=True)
class DumpScope:
    """What to dump: the cluster, one namespace, or one object (and its dependants)."""

    kind: Scope
    namespace: str | None = None
    target: TargetRef | None = None

    def ref(self) -> TargetRef:
        """The target as the BackupSession status and the metrics name it."""
        if self.kind == "cluster":
            return TargetRef(kind="Cluster")
        if self.kind == "namespace":
            return TargetRef(api_version="v1", kind="Namespace", name=self.namespace)
        target = self.target or TargetRef()
        return TargetRef(api_version=target.api_version, kind=target.kind, name=target.name)


def scope_of(config: BackupConfiguration) -> DumpScope:
    """The scope a kubedump BackupConfiguration asks for (module docstring); DumpError when unclear."""
    target = config.spec.target
    ref = target.ref if target is not None else None
    if ref is None or not (ref.kind or ref.name):
        return DumpScope("cluster")
    where = f"BackupConfiguration {config.metadata.namespace}/{config.metadata.name} spec.target.ref"
    if not ref.kind or not ref.name:
        raise DumpError(f"{where} needs both kind and name", reason="InvalidTarget")
    if ref.kind == "Namespace" and (ref.api_version or "v1") == "v1":
        return DumpScope("namespace", namespace=ref.name)
    if not ref.api_version:
        raise DumpError(f"{where} needs apiVersion for kind {ref.kind}", reason="InvalidTarget")
    namespace = ref.namespace or config.metadata.namespace
    return DumpScope("application", namespace=namespace, target=ref)
