"""What the operator's own identity may do, asked of the API server (SelfSubjectAccessReview): async.

Used where a right the chart grants may be missing (an operator image newer than its chart's RBAC): the
operator then says so once, naming the right, and does without what needs it, rather than failing every
watch it runs.
"""

from __future__ import annotations

from kubernetes_asyncio import client

from stashlet.operator.core.apiclient import ApiClient, call_json


async def allowed(api: ApiClient, verb: str, group: str, resource: str, namespace: str | None) -> bool:
    """True when the operator may ``verb`` ``resource`` (of API ``group``) in ``namespace`` (None: all)."""
    attributes: dict[str, str] = {"verb": verb, "group": group, "resource": resource}
    if namespace:
        attributes["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    answer = await call_json(client.AuthorizationV1Api(api).create_self_subject_access_review, review)
    return bool((answer.get("status") or {}).get("allowed"))
