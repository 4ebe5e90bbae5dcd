"""The Snapshot resource as Stash serves it: names, objects, discovery documents, Tables and Status.

A snapshot is named ``<repository>-<first 8 characters of the restic snapshot ID>``; its ``uid`` is the
full ID, its ``creationTimestamp`` the snapshot's time, its labels ``repository`` and ``hostname``
(overwritten by the Repository's own labels, as Stash does). Tables carry Stash's columns: Name, ID,
Repository, Hostname, Created At.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any, Final

from stashlet.agent.errors import RefuseInput
from stashlet.agent.restic import output as rj
from stashlet.api.common import format_time

GROUP: Final = "repositories.stash.appscode.com"
VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "Snapshot"
LIST_KIND: Final = "SnapshotList"
PLURAL: Final = "snapshots"
SINGULAR: Final = "snapshot"
RESOURCE: Final = f"{PLURAL}.{GROUP}"
CATEGORIES: Final = ("storage", "appscode")
"""Stash's categories without ``all``: ``kubectl get all`` would run restic on every repository."""
VERBS: Final = ("get", "list")
ID_LENGTH: Final = 8
LABEL_REPOSITORY: Final = "repository"
LABEL_HOSTNAME: Final = "hostname"

_SHORT_ID = re.compile(rf"^[0-9a-f]{{{ID_LENGTH}}}$")


class BadSnapshotName(RefuseInput):
    """A snapshot name that is not ``<repository>-<8 hex digits>``."""


def snapshot_name(repository: str, snapshot_id: str) -> str:
    """``<repository>-<first 8 characters of the ID>``."""
    return f"{repository}-{snapshot_id[:ID_LENGTH]}"


def split_name(name: str) -> tuple[str, str]:
    """The Repository's name and the short snapshot ID a snapshot name holds; BadSnapshotName if none."""
    repository, _, short_id = name.rpartition("-")
    if not repository or not _SHORT_ID.match(short_id):
        raise BadSnapshotName(
            f'snapshot name "{name}" is not <repository>-<first {ID_LENGTH} characters of the snapshot ID>'
        )
    return repository, short_id


def snapshot_labels(repository: str, hostname: str, repository_labels: Mapping[str, str]) -> dict[str, str]:
    """A snapshot's labels: ``repository`` and ``hostname``, the Repository's own labels over them."""
    return {LABEL_REPOSITORY: repository, LABEL_HOSTNAME: hostname, **repository_labels}


def snapshot_object(
    namespace: str, repository: str, repository_labels: Mapping[str, str], snapshot: rj.Snapshot
) -> dict[str, Any]:
    """The Snapshot object of one restic snapshot of Repository ``namespace/repository``."""
    metadata: dict[str, Any] = {
        "name": snapshot_name(repository, snapshot.id),
        "namespace": namespace,
        "uid": snapshot.id,
        "labels": snapshot_labels(repository, snapshot.hostname, repository_labels),
    }
    if snapshot.time is not None:
        metadata["creationTimestamp"] = format_time(snapshot.time.astimezone(UTC).replace(microsecond=0))
    status: dict[str, Any] = {
        "tree": snapshot.tree,
        "paths": list(snapshot.paths),
        "hostname": snapshot.hostname,
        "username": snapshot.username,
        "uid": snapshot.uid,
        "gid": snapshot.gid,
        "repository": repository,
    }
    if snapshot.tags:
        status["tags"] = list(snapshot.tags)
    return {"apiVersion": GROUP_VERSION, "kind": KIND, "metadata": metadata, "status": status}


def snapshot_list(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A SnapshotList of ``items``."""
    return {"apiVersion": GROUP_VERSION, "kind": LIST_KIND, "metadata": {}, "items": list(items)}


# ---------------------------------------------------------------- discovery


def group_document() -> dict[str, Any]:
    """The APIGroup of ``/apis/repositories.stash.appscode.com``."""
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def group_list_document() -> dict[str, Any]:
    """The APIGroupList of ``/apis``: this server's one group."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_document()]}


def resource_list_document() -> dict[str, Any]:
    """The APIResourceList of ``/apis/repositories.stash.appscode.com/v1alpha1``."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": PLURAL,
                "singularName": SINGULAR,
                "namespaced": True,
                "kind": KIND,
                "verbs": list(VERBS),
                "categories": list(CATEGORIES),
            }
        ],
    }


# ---------------------------------------------------------------- tables

COLUMNS: Final = (
    {"name": "Name", "type": "string", "format": "name", "description": "Name of the Snapshot"},
    {"name": "ID", "type": "string", "format": "", "description": "Snapshot ID"},
    {
        "name": "Repository",
        "type": "string",
        "format": "repository",
        "description": "Name of the repository where the Snapshot was backed up",
    },
    {
        "name": "Hostname",
        "type": "string",
        "format": "hostname",
        "description": "Name of the host whose data was backed up",
    },
    {
        "name": "Created At",
        "type": "date",
        "format": "",
        "description": "Timestamp when the snapshot was created",
    },
)


def wants_table(accept: str) -> str | None:
    """The meta.k8s.io version of the Table ``accept`` asks for (``v1`` or ``v1beta1``), None for plain
    objects: kubectl asks ``application/json;as=Table;v=v1;g=meta.k8s.io, application/json``."""
    for choice in accept.split(","):
        pairs = [part.split("=", 1) for part in choice.split(";")[1:] if "=" in part]
        params = {key.strip(): value.strip() for key, value in pairs}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v", "v1")
    return None


def _row_object(item: dict[str, Any], include: str, table_version: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return item
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": item["metadata"],
    }


def table(
    items: Sequence[dict[str, Any]],
    *,
    table_version: str = "v1",
    include: str = "Metadata",
    headers: bool = True,
) -> dict[str, Any]:
    """The Table of ``items`` with Stash's columns; each row carries its object as ``include`` asks
    (``None``, ``Metadata``, ``Object``: the ``includeObject`` query parameter)."""
    rows = []
    for item in items:
        metadata, status = item["metadata"], item["status"]
        cells = [
            metadata["name"],
            str(metadata["uid"])[:ID_LENGTH],
            status["repository"],
            status["hostname"],
            metadata.get("creationTimestamp", ""),
        ]
        rows.append({"cells": cells, "object": _row_object(item, include, table_version)})
    body: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": {},
        "rows": rows,
    }
    if headers:
        body["columnDefinitions"] = [dict(column) for column in COLUMNS]
    return body


# ---------------------------------------------------------------- status


def status(
    code: int, reason: str, message: str, *, name: str | None = None, kind: str | None = PLURAL
) -> dict[str, Any]:
    """A metav1.Status failure: ``kubectl`` prints ``Error from server (<reason>): <message>``."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if kind:
        details |= {"group": GROUP, "kind": kind}
    if details:
        body["details"] = details
    return body
