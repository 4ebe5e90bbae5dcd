"""Cleaning a dumped object of what the cluster set, so that ``kubectl apply`` can re-create it.

Pure functions over the object as the API server sent it (a plain dict, changed in place).

What goes, and why:

- ``status``: observed state, rebuilt by controllers.
- ``metadata``: ``managedFields``, ``resourceVersion``, ``uid``, ``creationTimestamp``, ``generation``,
  ``selfLink``, ``generateName`` (the name is kept), ``deletionTimestamp``/``deletionGracePeriodSeconds``.
- ``metadata.ownerReferences``: an owner reference must carry the owner's ``uid`` (the API server
  rejects one without), and the uid of a re-created owner is new: a stale uid makes the garbage
  collector delete the re-applied dependant. Without them, controllers adopt their orphans by
  selector again (a Deployment its ReplicaSet, a ReplicaSet its Pods), which is what re-apply needs.
- annotations the server or controllers write: ``kubectl.kubernetes.io/last-applied-configuration``,
  the Deployment/ReplicaSet revision and replica bookkeeping, PVC binding marks, a token Secret's
  ServiceAccount uid.
- Service ``spec.clusterIP``/``clusterIPs`` (allocated; a headless Service keeps ``None``).
- PersistentVolume ``spec.claimRef`` ``uid``/``resourceVersion`` (so the volume binds to the
  re-created claim of the same namespace and name).
- Pod ``spec.nodeName`` (the scheduler's choice) and ``spec.priority`` (computed from the class).
- Job: the generated ``spec.selector`` and ``controller-uid`` template labels, unless the selector
  is manual (the API server refuses a Job that brings a generated selector).
- Secret of type ``kubernetes.io/service-account-token``: its ``data`` (the token controller issues a
  fresh token for the re-created ServiceAccount).
- Namespace label ``kubernetes.io/metadata.name`` (the server sets it from the name).

Objects the control plane derives from others are not dumped at all (:func:`is_server_generated`):
they come back by themselves once their source is re-applied, and a stale copy would only get in the
way. These are the ``kube-root-ca.crt`` ConfigMap it publishes into every namespace, and objects
labelled as managed by its own controllers: Endpoints (``endpoints.kubernetes.io/managed-by:
endpoint-controller``), EndpointSlices (``endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io`` or the mirroring controller) and the IPAddresses of Service IPs
(``ipaddress.kubernetes.io/managed-by: ipallocator.k8s.io``).
"""

from __future__ import annotations

from typing import Any

SERVER_SET_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "generateName",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)

SERVER_SET_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "pv.kubernetes.io/bind-completed",
        "pv.kubernetes.io/bound-by-controller",
        "kubernetes.io/service-account.uid",
    }
)

JOB_GENERATED_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"  # noqa: S105 - a Secret type, not a secret

CONTROL_PLANE_MANAGED = {
    "endpoints.kubernetes.io/managed-by": frozenset({"endpoint-controller"}),
    "endpointslice.kubernetes.io/managed-by": frozenset(
        {"endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io"}
    ),
    "ipaddress.kubernetes.io/managed-by": frozenset({"ipallocator.k8s.io"}),
}
"""Labels with which the control plane's controllers mark the objects they derive from others."""


def _dict(parent: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = parent.get(key)
    return value if isinstance(value, dict) else None


def clean_metadata(meta: dict[str, Any]) -> None:
    """Drop the server-set metadata fields and annotations (empty maps go too)."""
    for key in SERVER_SET_METADATA:
        meta.pop(key, None)
    annotations = _dict(meta, "annotations")
    if annotations is not None:
        for key in SERVER_SET_ANNOTATIONS & annotations.keys():
            del annotations[key]
        if not annotations:
            del meta["annotations"]


def _clean_template(spec: dict[str, Any] | None) -> None:
    """A pod template's metadata: the server writes ``creationTimestamp: null`` into some."""
    template = _dict(spec, "template") if spec else None
    meta = _dict(template, "metadata") if template else None
    if meta is not None:
        meta.pop("creationTimestamp", None)


def _clean_service(spec: dict[str, Any]) -> None:
    if spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)


def _clean_persistent_volume(spec: dict[str, Any]) -> None:
    claim = _dict(spec, "claimRef")
    if claim is not None:
        claim.pop("uid", None)
        claim.pop("resourceVersion", None)


def _clean_pod_spec(spec: dict[str, Any]) -> None:
    spec.pop("nodeName", None)
    spec.pop("priority", None)


def _clean_job(spec: dict[str, Any]) -> None:
    if spec.get("manualSelector"):
        return
    spec.pop("selector", None)
    template = _dict(spec, "template")
    meta = _dict(template, "metadata") if template else None
    labels = _dict(meta, "labels") if meta else None
    if meta is not None and labels is not None:
        for key in JOB_GENERATED_LABELS:
            labels.pop(key, None)
        if not labels:
            del meta["labels"]


def is_server_generated(group: str, kind: str, obj: dict[str, Any]) -> bool:
    """True for objects the control plane makes by itself in every namespace (not dumped when sanitizing)."""
    meta = obj.get("metadata") or {}
    if group == "" and kind == "ConfigMap" and meta.get("name") == ROOT_CA_CONFIGMAP:
        return True
    labels = meta.get("labels") or {}
    return any(labels.get(key) in values for key, values in CONTROL_PLANE_MANAGED.items())


def sanitize(group: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (changed in place) without the fields listed in the module docstring."""
    obj.pop("status", None)
    meta = _dict(obj, "metadata")
    if meta is not None:
        clean_metadata(meta)
    spec = _dict(obj, "spec")
    if spec is not None:
        _clean_template(spec)
        job_template = _dict(spec, "jobTemplate")
        if job_template is not None:
            _clean_template(_dict(job_template, "spec"))
    if group == "" and spec is not None:
        if kind == "Service":
            _clean_service(spec)
        elif kind == "PersistentVolume":
            _clean_persistent_volume(spec)
        elif kind == "Pod":
            _clean_pod_spec(spec)
    if group == "" and kind == "Secret" and obj.get("type") == SERVICE_ACCOUNT_TOKEN:
        obj.pop("data", None)
    if group == "" and kind == "Namespace" and meta is not None:
        labels = _dict(meta, "labels")
        if labels is not None:
            labels.pop(NAMESPACE_NAME_LABEL, None)
            if not labels:
                del meta["labels"]
    if group == "batch" and kind == "Job" and spec is not None:
        _clean_job(spec)
    return obj
