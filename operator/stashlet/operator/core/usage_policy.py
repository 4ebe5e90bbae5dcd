"""Whether a Repository's ``spec.usagePolicy`` admits a namespace: pure, for backup, restore, auto-backup.

Stash's rules: without a usage policy only the Repository's own namespace may use it; ``from: All`` admits
every namespace, ``from: Same`` (the default) only its own, ``from: Selector`` the namespaces whose labels
the selector matches. Selectors follow ``metav1.LabelSelector``: ``matchLabels`` and ``matchExpressions``
(``In``, ``NotIn``, ``Exists``, ``DoesNotExist``) must all hold; an empty selector matches every namespace;
a missing selector or an unknown operator matches none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stashlet.api.common import LabelSelector
from stashlet.api.repository import FromNamespaces, Repository


@dataclass(frozen=True)
class UsageDecision:
    """The verdict, and (when refused) a message naming the namespace, the Repository and the field."""

    allowed: bool
    message: str = ""


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """True when ``labels`` satisfy ``selector`` (``None`` selects nothing, ``{}`` selects everything)."""
    if selector is None:
        return False
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions or []:
        values = requirement.values or []
        present = requirement.key in labels
        match requirement.operator:
            case "In":
                ok = present and labels[requirement.key] in values
            case "NotIn":
                ok = not present or labels[requirement.key] not in values
            case "Exists":
                ok = present
            case "DoesNotExist":
                ok = not present
            case _:
                ok = False
        if not ok:
            return False
    return True


def usage_allowed(
    repository: Repository, namespace: str, namespace_labels: Mapping[str, str] | None
) -> UsageDecision:
    """Whether objects in ``namespace`` (whose labels are ``namespace_labels``) may use ``repository``."""
    repo_namespace = repository.metadata.namespace or ""
    policy = repository.spec.usage_policy
    allowed_namespaces = policy.allowed_namespaces if policy else None
    source = allowed_namespaces.from_ if allowed_namespaces and allowed_namespaces.from_ else None
    if source is None or source == FromNamespaces.SAME:
        allowed = namespace == repo_namespace
    elif source == FromNamespaces.ALL:
        allowed = True
    else:
        selector = allowed_namespaces.selector if allowed_namespaces else None
        allowed = selector_matches(selector, namespace_labels or {})
    if allowed:
        return UsageDecision(True)
    return UsageDecision(
        False,
        f"Namespace {namespace!r} is not allowed to refer Repository {repository.metadata.name!r} of "
        f"{repo_namespace!r} namespace: see spec.usagePolicy.allowedNamespaces of Repository "
        f"{repo_namespace}/{repository.metadata.name} (from: {source.value if source else 'Same'}).",
    )
