"""Objects made straight away when they are likely new, on the real API server: one that exists after all
is read, compared and replaced as any other, and a Secret of the token's name is never overwritten."""

from __future__ import annotations

from typing import Any

import pytest

from stashlet.operator.core.apiclient import ApiClient
from stashlet.operator.core.resources import Resources
from stashlet.operator.injection import rbac

pytestmark = pytest.mark.cluster


def role(namespace: str, verbs: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "stashlet-test", "namespace": namespace, "labels": {"app": "t"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}],
    }


async def test_a_likely_new_object_is_made_or_brought_up_to_date(api: ApiClient, namespace: str) -> None:
    """Missing: created. Existing with other rules: replaced by the desired ones. Up to date: unchanged."""
    resources = Resources(api)
    assert await resources.ensure(role(namespace, ["get"]), rbac.up_to_date, likely_new=True) == "created"
    desired = role(namespace, ["get", "list"])
    assert await resources.ensure(desired, rbac.up_to_date, likely_new=True) == "replaced"
    found = await resources.get("Role", namespace, "stashlet-test")
    assert found["rules"] == desired["rules"]
    assert await resources.ensure(desired, rbac.up_to_date, likely_new=True) == "unchanged"


async def test_a_likely_new_token_never_overwrites_a_secret_of_its_name(
    api: ApiClient, namespace: str
) -> None:
    """A Secret that is not the account's token, where the token should go, is named as the problem and
    left as it was."""
    resources = Resources(api)
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "agent", "namespace": namespace},
    }
    token = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": "agent",
            "namespace": namespace,
            "annotations": {"kubernetes.io/service-account.name": "agent"},
        },
    }
    plain = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "agent", "namespace": namespace},
             "stringData": {"k": "v"}}  # fmt: skip
    await resources.create(plain)
    problem = await resources.ensure_identity(account, token, rbac.up_to_date, "the test's", likely_new=True)
    assert problem is not None
    assert f"Secret {namespace}/agent exists but is not the token" in problem
    assert (await resources.get("Secret", namespace, "agent")).get("type") == "Opaque"
    assert await resources.get("ServiceAccount", namespace, "agent")
