"""A RestoreSession's rules, checked as Stash's webhook checks them: pure, shared by operator and agent.

The operator validates the rules before it injects ``stash-init`` and the agent validates them again
before it restores (a session may change in between), with this one function, so a session the operator
passes is one the agent accepts, and both name a problem in the same words.

What is checked: the conditions Stash's documentation gives (at most one rule without ``targetHosts``,
a host named by one rule only, ``snapshots`` and ``paths`` never both; Stash's webhook checks them only
on the deprecated ``spec.rules``, which its mutating webhook has by then moved under ``spec.target``, so
it lets a broken set through and picks silently); what restic itself would refuse later (``include``
with ``exclude``, a snapshot that is neither ``latest`` nor an ID, a path that is relative or climbs with
``..``); and a session that would restore nothing. Stash restores, per host, the matching rule's
``snapshots`` or else the latest snapshot of each of its ``paths`` (stashed/apimachinery
``pkg/restic/restore.go`` ``runRestore``): no rules, or a rule with neither, restores nothing there and
the session still Succeeds. Here such a session is refused, naming the field, before anything runs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Final

from stashlet.api.restoresession import RestoreSession, Rule

LATEST: Final = "latest"
_SNAPSHOT_ID: Final = re.compile(r"^[0-9a-f]{4,64}$")


def rules_of(session: RestoreSession) -> tuple[str, list[Rule]]:
    """The session's rules and the field they come from (``spec.target.rules``, else the deprecated
    ``spec.rules``)."""
    target = session.spec.target
    if target is not None and target.rules:
        return "spec.target.rules", list(target.rules)
    return "spec.rules", list(session.spec.rules or [])


def rule_problems(rules: Sequence[Rule], where: str = "spec.target.rules") -> list[str]:
    """Every problem with ``rules``, each naming the rule by index; empty when they are usable."""
    if not rules:
        return [
            "spec.target.rules: no rule, so nothing would be restored (Stash restores nothing without "
            "rules); add a rule with paths (each path's latest snapshot of the host) or snapshots"
        ]
    problems: list[str] = []
    catch_all: list[int] = []
    claimed: dict[str, int] = {}
    for i, rule in enumerate(rules):
        at = f"{where}[{i}]"
        if rule.snapshots and rule.paths:
            problems.append(f"{at}: snapshots and paths are mutually exclusive")
        if not rule.snapshots and not rule.paths:
            problems.append(
                f"{at}: neither paths nor snapshots, so this rule restores nothing (as in Stash); "
                "name the paths to restore (each from its latest snapshot of the host) or snapshots"
            )
        if rule.include and rule.exclude:
            problems.append(f"{at}: include and exclude are mutually exclusive (restic refuses both)")
        for snapshot in rule.snapshots or []:
            if snapshot != LATEST and not _SNAPSHOT_ID.match(snapshot):
                problems.append(f"{at}: snapshot {snapshot!r} is neither 'latest' nor a snapshot ID")
        for path in rule.paths or []:
            if not posixpath.isabs(path) or ".." in path.split("/"):
                problems.append(f"{at}: path {path!r} must be absolute, without '..'")
        if not rule.target_hosts:
            catch_all.append(i)
        for host in rule.target_hosts or []:
            if host in claimed:
                problems.append(f"{at}: host {host!r} is also a target of {where}[{claimed[host]}]")
            else:
                claimed[host] = i
    if len(catch_all) > 1:
        problems.append(
            f"{where}[{catch_all[1]}]: only one rule may omit targetHosts "
            f"({where}[{catch_all[0]}] already does)"
        )
    return problems
