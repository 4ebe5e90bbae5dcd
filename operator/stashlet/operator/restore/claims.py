"""A Job-restored RestoreSession's shape, and the claims its volumeClaimTemplates make: pure.

:func:`job_problems` says what keeps a session that restores through Jobs
(:func:`stashlet.api.restore_jobs.restores_by_job`) from running, each naming the field:

- the Task: only ``pvc-restore``, which a claim target needs (none, or it, with volumeClaimTemplates);
- a claim target (``spec.target.ref`` a PersistentVolumeClaim, ``apiVersion: v1``, in the session's
  namespace): no templates, no ``replicas`` (one claim is one host), at most one ``volumeMounts`` entry
  (its ``mountPath`` is where the claim is mounted; its ``name`` is free);
- volumeClaimTemplates: no ``ref``; each template named, in the session's namespace, with no variable
  but ``${POD_ORDINAL}``, which every name carries when ``replicas`` is above one (else the hosts would
  share one claim); template names unique without the ordinal, none taking the agent's own volume names;
  ``replicas`` at least one; ``volumeMounts`` present, each naming a template by its name without the
  ordinal.

What the API server says of each claim (a dry run) is added by the reconciler.

:func:`claims` is the claims of one ordinal: each template as written, with the name resolved, the
session's namespace, and labels saying which session made it. They are **not** owned by the session:
like Stash, stashlet leaves the restored claims to the user when the session goes. A claim that exists
already is used as it is.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from stashlet.api import names, restore_jobs
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.core.objects import managed_labels

TEMPLATES = "spec.target.volumeClaimTemplates"
_VARIABLE = re.compile(r"\$\{[^}]*\}")
RESERVED_VOLUMES = frozenset({names.TMP_VOLUME, names.TARGET_VOLUME, "stash-local"})
"""Volume names a restore Job's pod uses for itself."""


def task_problems(rs: RestoreSession) -> list[str]:
    """A Task other than pvc-restore, or pvc-restore with nothing to restore into."""
    task = rs.spec.task
    name = (task.name or "") if task is not None else ""
    if name and name not in names.PVC_RESTORE_TASKS:
        known = ", ".join(sorted(names.PVC_RESTORE_TASKS))
        return [
            f"spec.task.name: task {name!r} is not supported: stashlet restores through a Job only {known}"
        ]
    if not name and restore_jobs.names_claim(rs):
        return [
            f"spec.task.name: a {names.KIND_PERSISTENT_VOLUME_CLAIM} target is restored by the Task "
            f"{', '.join(sorted(names.PVC_RESTORE_TASKS))}; set it"
        ]
    if name and not restore_jobs.names_claim(rs) and not restore_jobs.claim_templates(rs):
        return [
            f"spec.target.ref: task {name} restores into a {names.KIND_PERSISTENT_VOLUME_CLAIM}; name one "
            "(or give spec.target.volumeClaimTemplates)"
        ]
    return []


def claim_target_problems(rs: RestoreSession) -> list[str]:
    """What is wrong with a session that restores into a named claim."""
    target = rs.spec.target
    if target is None or target.ref is None or not restore_jobs.names_claim(rs):
        return []
    ref = target.ref
    problems: list[str] = []
    if not ref.name:
        problems.append("spec.target.ref.name: the claim to restore into is required")
    if ref.api_version and ref.api_version != "v1":
        problems.append(f"spec.target.ref.apiVersion: {ref.api_version} is not supported; use v1")
    if ref.namespace and ref.namespace != rs.metadata.namespace:
        problems.append(
            f"spec.target.ref.namespace: the claim must be in the session's namespace "
            f"{rs.metadata.namespace}, not {ref.namespace}"
        )
    if target.volume_claim_templates:
        problems.append(f"{TEMPLATES}: a session restores into a named claim or into new claims, not both")
    if target.replicas is not None:
        problems.append("spec.target.replicas: a stand-alone claim is restored by one host")
    mounts = target.volume_mounts or []
    if len(mounts) > 1:
        problems.append(
            "spec.target.volumeMounts[1]: a stand-alone claim is mounted once (volumeMounts[0].mountPath)"
        )
    return problems


def template_problems(rs: RestoreSession) -> list[str]:
    """What is wrong with ``spec.target.volumeClaimTemplates`` and the mounts naming them."""
    target = rs.spec.target
    if target is None or not target.volume_claim_templates:
        return []
    problems: list[str] = []
    if target.ref is not None and (target.ref.kind or target.ref.name):
        problems.append(f"spec.target.ref: a session restoring into {TEMPLATES} names no target")
    replicas = target.replicas
    if replicas is not None and replicas < 1:
        problems.append(f"spec.target.replicas: {replicas}: at least one replica is restored")
    seen: dict[str, int] = {}
    for i, template in enumerate(restore_jobs.claim_templates(rs)):
        meta = template.get("metadata") or {}
        name = str(meta.get("name") or "")
        at = f"{TEMPLATES}[{i}]"
        if not name:
            problems.append(f"{at}.metadata.name: required")
            continue
        unknown = [v for v in _VARIABLE.findall(name) if v != names.POD_ORDINAL_VARIABLE]
        if unknown:
            problems.append(
                f"{at}.metadata.name: {', '.join(unknown)} is not a variable stashlet resolves "
                f"(only {names.POD_ORDINAL_VARIABLE})"
            )
        if (replicas or 1) > 1 and names.POD_ORDINAL_VARIABLE not in name:
            problems.append(
                f"{at}.metadata.name: {name!r} needs {names.POD_ORDINAL_VARIABLE} with spec.target.replicas "
                f"{replicas}, or every replica would restore into the same claim"
            )
        namespace = meta.get("namespace")
        if namespace and namespace != rs.metadata.namespace:
            problems.append(
                f"{at}.metadata.namespace: claims are made in the session's namespace "
                f"{rs.metadata.namespace}, not {namespace}"
            )
        volume = restore_jobs.volume_name(name)
        if volume in RESERVED_VOLUMES:
            problems.append(f"{at}.metadata.name: {volume!r} is a volume of the restore Job itself")
        if volume in seen:
            problems.append(f"{at}.metadata.name: {volume!r} is also the name of {TEMPLATES}[{seen[volume]}]")
        seen.setdefault(volume, i)
    mounts = target.volume_mounts or []
    if not mounts:
        problems.append(
            "spec.target.volumeMounts: required with volumeClaimTemplates: where each claim is mounted to "
            "restore into"
        )
    for i, mount in enumerate(mounts):
        if mount.name not in seen:
            problems.append(
                f"spec.target.volumeMounts[{i}].name: no volumeClaimTemplate is named {mount.name!r} "
                f"(without the ordinal; templates: {', '.join(seen) or 'none'})"
            )
    return problems


def job_problems(rs: RestoreSession) -> list[str]:
    """Everything :mod:`this module <stashlet.operator.restore.claims>` checks, each naming the field."""
    return [*task_problems(rs), *claim_target_problems(rs), *template_problems(rs)]


def claims(rs: RestoreSession, ordinal: int | None) -> list[tuple[int, dict[str, Any]]]:
    """The claims of one ordinal, each with the index of its template (module docstring)."""
    namespace = rs.metadata.namespace or ""
    labels = {**managed_labels(rs), names.LABEL_RESTORE_SESSION: rs.metadata.name or ""}
    made: list[tuple[int, dict[str, Any]]] = []
    for i, template in enumerate(restore_jobs.claim_templates(rs)):
        meta = copy.deepcopy(template.get("metadata") or {})
        meta["name"] = restore_jobs.claim_name(str(meta.get("name") or ""), ordinal)
        meta["namespace"] = namespace
        meta["labels"] = {**(meta.get("labels") or {}), **labels}
        claim = {
            "apiVersion": "v1",
            "kind": names.KIND_PERSISTENT_VOLUME_CLAIM,
            "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        made.append((i, claim))
    return made


def storage_classes(rs: RestoreSession) -> list[tuple[int, str]]:
    """The StorageClasses the templates name, each with its template's index."""
    found: list[tuple[int, str]] = []
    for i, template in enumerate(restore_jobs.claim_templates(rs)):
        name = (template.get("spec") or {}).get("storageClassName")
        if name:
            found.append((i, str(name)))
    return found
