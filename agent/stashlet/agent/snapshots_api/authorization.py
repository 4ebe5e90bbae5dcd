"""May this user do it: a SubjectAccessReview, asked of the API server as RBAC decides everything else."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from stashlet.agent.snapshots_api import resource
from stashlet.agent.snapshots_api.frontproxy import User
from stashlet.kube.rest import KubeApi

log = logging.getLogger(__name__)

SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True)
class Attributes:
    """What a request does: ``verb`` on snapshots in ``namespace`` (None: every namespace), ``name``."""

    verb: str
    namespace: str | None
    name: str | None = None

    def forbidden_message(self, user: User, reason: str = "") -> str:
        """The API server's own wording of a refusal."""
        subject = f'{resource.RESOURCE} "{self.name}"' if self.name else resource.RESOURCE
        scope = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        text = (
            f'{subject} is forbidden: User "{user.name}" cannot {self.verb} resource "{resource.PLURAL}" '
            f'in API group "{resource.GROUP}" {scope}'
        )
        return f"{text}: {reason}" if reason else text


def review(user: User, attributes: Attributes) -> dict[str, Any]:
    """The SubjectAccessReview asking whether ``user`` may do ``attributes``."""
    resource_attributes: dict[str, Any] = {
        "verb": attributes.verb,
        "group": resource.GROUP,
        "version": resource.VERSION,
        "resource": resource.PLURAL,
        "namespace": attributes.namespace or "",
    }
    if attributes.name:
        resource_attributes["name"] = attributes.name
    spec: dict[str, Any] = {
        "user": user.name,
        "groups": list(user.groups),
        "resourceAttributes": resource_attributes,
    }
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra.items()}
    if user.uid:
        spec["uid"] = user.uid
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


async def allowed(api: KubeApi, user: User, attributes: Attributes) -> tuple[bool, str]:
    """Whether the API server allows it, and its reason (empty when it gives none)."""
    answer = await api.send("POST", SUBJECT_ACCESS_REVIEWS, body=review(user, attributes))
    status = answer.get("status") or {}
    return bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or "")
