"""The dump folder: its layout, the YAML written into it, and the report of what went in.

Layout::

    cluster/<group or "core">/<version>/<Kind>/<name>.yaml                 cluster-scoped objects
    namespaces/<namespace>/<group or "core">/<version>/<Kind>/<name>.yaml  namespaced objects

Files are written with mode 0600 in folders of mode 0700: a dump holds Secrets in clear.
"""

from __future__ import annotations

import io
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from stashlet.agent.kubedump.apiserver import ApiResource, DiscoveryFailure
from stashlet.agent.kubedump.options import DumpScope
from stashlet.agent.kubedump.sanitize import is_server_generated, sanitize

CLUSTER_DIR: Final = "cluster"
NAMESPACES_DIR: Final = "namespaces"
CORE_GROUP_DIR: Final = "core"

# --------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class SkippedResource:
    """A resource type that could not be listed (or read), with the server's answer."""

    resource: str
    namespace: str | None
    status: int
    message: str

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.resource}{where} ({self.status or 'error'}: {self.message})"


@dataclass
class DumpReport:
    """What a dump wrote and what it had to leave out."""

    root: Path
    scope: DumpScope
    objects: int = 0
    bytes: int = 0
    omitted: int = 0
    per_kind: Counter[str] = field(default_factory=Counter)
    skipped_groups: list[DiscoveryFailure] = field(default_factory=list)
    skipped_resources: list[SkippedResource] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing was skipped."""
        return not (self.skipped_groups or self.skipped_resources)

    def summary(self) -> str:
        """One line for a condition or an event: what was skipped with the HTTP status (the log has more)."""
        text = f"dumped {self.objects} objects of {len(self.per_kind)} kinds ({self.scope.kind} scope)"
        if self.skipped_groups:
            text += "; API groups not discoverable: " + ", ".join(
                f"{f.group_version} ({f.status or 'error'})" for f in self.skipped_groups
            )
        if self.skipped_resources:
            text += "; resources skipped: " + ", ".join(
                f"{s.resource} ({s.status or 'error'})" for s in self.skipped_resources
            )
        return text


# --------------------------------------------------------------------------------- writing


class _Dumper(yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper):  # type: ignore[misc]
    """Safe YAML (libyaml when built in); multi-line strings as literal blocks, for people reading."""


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _node(dumper: yaml.SafeDumper, value: Any) -> yaml.Node:
    """The YAML node of a JSON value, built directly: what PyYAML's safe representer would build (no
    anchors: a decoded JSON document shares no objects), at a fraction of its cost per value. Kinds JSON
    does not make (floats' special forms included) go through the representer."""
    if isinstance(value, str):
        return yaml.ScalarNode(_STR, value, style="|" if "\n" in value else None)
    if isinstance(value, dict):
        pairs = [(_node(dumper, key), _node(dumper, item)) for key, item in value.items()]
        return yaml.MappingNode(_MAP, pairs, flow_style=False)
    if isinstance(value, list):
        return yaml.SequenceNode(_SEQ, [_node(dumper, item) for item in value], flow_style=False)
    if value is True or value is False:
        return yaml.ScalarNode("tag:yaml.org,2002:bool", "true" if value else "false")
    if value is None:
        return yaml.ScalarNode("tag:yaml.org,2002:null", "null")
    if type(value) is int:
        return yaml.ScalarNode("tag:yaml.org,2002:int", str(value))
    node: yaml.Node = dumper.represent_data(value)
    return node


def to_yaml(obj: dict[str, Any]) -> str:
    """The object as YAML, fields in the server's order."""
    stream = io.StringIO()
    dumper = _Dumper(stream, default_flow_style=False, sort_keys=False, allow_unicode=True)
    try:
        dumper.open()
        dumper.serialize(_node(dumper, obj))
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


def folder_of(resource: ApiResource, namespace: str | None) -> Path:
    """The folder, under the dump folder, of ``resource``'s objects in ``namespace`` (module docstring)."""
    if resource.namespaced and not namespace:
        raise ValueError(f"{resource.qualified} object has no namespace")
    base = Path(NAMESPACES_DIR, str(namespace)) if resource.namespaced else Path(CLUSTER_DIR)
    return base / (resource.group or CORE_GROUP_DIR) / resource.version / resource.kind


def file_name(resource: ApiResource, obj: dict[str, Any]) -> str:
    """The file ``obj`` is written to in its folder: its name, which must be usable as a file name."""
    name = str((obj.get("metadata") or {}).get("name", ""))
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{resource.qualified} object has no usable name: {name!r}")
    return f"{name}.yaml"


class TreeWriter:
    """Writes objects into the dump folder, cleaned when asked, and counts them into the report."""

    def __init__(self, report: DumpReport, *, sanitize: bool) -> None:
        """Write under ``report.root``."""
        self.report = report
        self.sanitize = sanitize
        self._folders: dict[tuple[str, str, str | None], str] = {}

    def write(self, resource: ApiResource, obj: dict[str, Any]) -> None:
        """Write one object (or count it as omitted when the control plane makes it by itself)."""
        if self.sanitize:
            if is_server_generated(resource.group, resource.kind, obj):
                self.report.omitted += 1
                return
            obj = sanitize(resource.group, resource.kind, obj)
        name = file_name(resource, obj)
        path = os.path.join(self._folder(resource, (obj.get("metadata") or {}).get("namespace")), name)
        data = to_yaml(obj).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self.report.objects += 1
        self.report.bytes += len(data)
        self.report.per_kind[f"{resource.group_version}/{resource.kind}"] += 1

    def _folder(self, resource: ApiResource, namespace: str | None) -> str:
        """The absolute folder for ``resource`` in ``namespace``, made (mode 0700) the first time."""
        key = (resource.group_version, resource.kind, namespace if resource.namespaced else None)
        folder = self._folders.get(key)
        if folder is None:
            made = self.report.root / folder_of(resource, namespace)
            made.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder = self._folders[key] = str(made)
        return folder


def prepare_folder(root: Path) -> None:
    """An empty folder only this user can read (the dump holds Secrets)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o700)
