"""A Repository's usagePolicy: All, Same and Selector (matchLabels, matchExpressions), as Stash decides."""

from typing import Any

import pytest

from stashlet.api.common import LabelSelector
from stashlet.api.repository import Repository
from stashlet.operator.core.usage_policy import selector_matches, usage_allowed


def repo(policy: dict[str, Any] | None) -> Repository:
    spec: dict[str, Any] = {"backend": {"gcs": {"bucket": "b"}, "storageSecretName": "s"}}
    if policy is not None:
        spec["usagePolicy"] = policy
    return Repository.from_dict({"metadata": {"name": "repo", "namespace": "backup"}, "spec": spec})


def test_without_a_policy_only_the_repositorys_namespace_may_use_it() -> None:
    """No usagePolicy: the Repository's own namespace is admitted, any other refused."""
    assert usage_allowed(repo(None), "backup", {}).allowed
    assert not usage_allowed(repo(None), "demo", {}).allowed


def test_from_all_admits_every_namespace() -> None:
    """``from: All`` admits a namespace whatever its labels."""
    assert usage_allowed(repo({"allowedNamespaces": {"from": "All"}}), "user1", None).allowed


def test_from_same_refuses_others_and_the_message_names_namespace_repository_and_field() -> None:
    """``from: Same`` refuses another namespace; the message says which, which Repository, which field."""
    decision = usage_allowed(repo({"allowedNamespaces": {"from": "Same"}}), "user1", {})
    assert not decision.allowed
    assert "'user1'" in decision.message
    assert "backup/repo" in decision.message
    assert "spec.usagePolicy.allowedNamespaces" in decision.message


def test_from_selector_admits_namespaces_whose_labels_match() -> None:
    """``from: Selector`` evaluates the selector against the namespace's labels."""
    policy = {
        "allowedNamespaces": {
            "from": "Selector",
            "selector": {
                "matchLabels": {"team": "a"},
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["user1"]}
                ],
            },
        }
    }
    labels = {"team": "a", "kubernetes.io/metadata.name": "user1"}
    assert usage_allowed(repo(policy), "user1", labels).allowed
    assert not usage_allowed(
        repo(policy), "user2", {**labels, "kubernetes.io/metadata.name": "user2"}
    ).allowed
    assert not usage_allowed(repo(policy), "user1", {"kubernetes.io/metadata.name": "user1"}).allowed


@pytest.mark.parametrize(
    ("expression", "labels", "expected"),
    [
        ({"key": "k", "operator": "In", "values": ["a", "b"]}, {"k": "b"}, True),
        ({"key": "k", "operator": "In", "values": ["a"]}, {}, False),
        ({"key": "k", "operator": "NotIn", "values": ["a"]}, {"k": "b"}, True),
        ({"key": "k", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "k", "operator": "NotIn", "values": ["a"]}, {"k": "a"}, False),
        ({"key": "k", "operator": "Exists"}, {"k": ""}, True),
        ({"key": "k", "operator": "Exists"}, {}, False),
        ({"key": "k", "operator": "DoesNotExist"}, {}, True),
        ({"key": "k", "operator": "DoesNotExist"}, {"k": "x"}, False),
        ({"key": "k", "operator": "Bogus"}, {"k": "x"}, False),
    ],
)
def test_match_expressions_follow_label_selector_semantics(
    expression: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    """In, NotIn (a missing key matches), Exists, DoesNotExist; an unknown operator matches nothing."""
    selector = LabelSelector.from_dict({"matchExpressions": [expression]})
    assert selector_matches(selector, labels) is expected


def test_an_empty_selector_matches_everything_and_none_matches_nothing() -> None:
    """``selector: {}`` selects every namespace; a Selector policy without a selector selects none."""
    assert selector_matches(LabelSelector(), {"x": "y"})
    assert not selector_matches(None, {"x": "y"})
    assert not usage_allowed(repo({"allowedNamespaces": {"from": "Selector"}}), "demo", {}).allowed
