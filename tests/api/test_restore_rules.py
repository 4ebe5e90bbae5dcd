"""The rules of a RestoreSession, as the operator and the agent both check them (one function)."""

from typing import Any

import pytest

from stashlet.api.restore_rules import rule_problems
from stashlet.api.restoresession import Rule


def rule(**fields: Any) -> Rule:
    return Rule.from_dict(fields)


def test_validation_names_each_broken_rule_by_index() -> None:
    """snapshots with paths, include with exclude, a malformed snapshot ID, a relative path, two catch-alls
    and a host claimed twice are each reported with the rule's index."""
    rules = [
        rule(targetHosts=["host-0"], snapshots=["latest"], paths=["/data"]),
        rule(targetHosts=["host-1"], paths=["/data"], include=["a"], exclude=["b"]),
        rule(targetHosts=["host-2"], snapshots=["--target=/"]),
        rule(paths=["data"]),
        rule(sourceHost="host-1"),
        rule(targetHosts=["host-0"], snapshots=["latest"]),
    ]
    problems = rule_problems(rules, "spec.target.rules")
    nothing = (
        "neither paths nor snapshots, so this rule restores nothing (as in Stash); name the paths to "
        "restore (each from its latest snapshot of the host) or snapshots"
    )
    assert problems == [
        "spec.target.rules[0]: snapshots and paths are mutually exclusive",
        "spec.target.rules[1]: include and exclude are mutually exclusive (restic refuses both)",
        "spec.target.rules[2]: snapshot '--target=/' is neither 'latest' nor a snapshot ID",
        "spec.target.rules[3]: path 'data' must be absolute, without '..'",
        f"spec.target.rules[4]: {nothing}",
        "spec.target.rules[5]: host 'host-0' is also a target of spec.target.rules[0]",
        "spec.target.rules[4]: only one rule may omit targetHosts (spec.target.rules[3] already does)",
    ]
    assert rule_problems([rule(snapshots=["1a2b3c4d"]), rule(targetHosts=["h"], paths=["/x"])]) == []


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            [{"snapshots": ["latest"], "paths": ["/a"]}],
            "spec.target.rules[0]: snapshots and paths are mutually exclusive",
        ),
        (
            [{"paths": ["/a"]}, {"paths": ["/b"]}],
            "spec.target.rules[1]: only one rule may omit targetHosts (spec.target.rules[0] already does)",
        ),
        (
            [{"targetHosts": ["host-0"], "paths": ["/a"]}, {"targetHosts": ["host-0"], "paths": ["/b"]}],
            "spec.target.rules[1]: host 'host-0' is also a target of spec.target.rules[0]",
        ),
        (
            [],
            "spec.target.rules: no rule, so nothing would be restored (Stash restores nothing without rules)",
        ),
        (
            [{"targetHosts": ["host-1"], "sourceHost": "host-0", "include": ["*.txt"]}],
            "spec.target.rules[0]: neither paths nor snapshots, so this rule restores nothing (as in Stash)",
        ),
        (
            [{"include": ["*.txt"], "exclude": ["*.log"]}],
            "spec.target.rules[0]: include and exclude are mutually exclusive (restic refuses both)",
        ),
        (
            [{"snapshots": ["yesterday"]}],
            "spec.target.rules[0]: snapshot 'yesterday' is neither 'latest' nor a snapshot ID",
        ),
        (
            [{"paths": ["source/data"]}],
            "spec.target.rules[0]: path 'source/data' must be absolute, without '..'",
        ),
        ([{"paths": ["/source/../etc"]}], "spec.target.rules[0]: path '/source/../etc' must be absolute"),
    ],
)
def test_rules_are_checked_as_stash_checks_them(rules: list[dict[str, Any]], expected: str) -> None:
    """Each bad rule is named by its index and says what is wrong."""
    problems = rule_problems([Rule.from_dict(r) for r in rules])
    assert any(p.startswith(expected) for p in problems), problems


def test_good_rules_pass() -> None:
    """Per-host rules plus one catch-all, snapshot IDs and ``latest``, include alone: no problem."""
    rules: list[dict[str, Any]] = [
        {"targetHosts": ["host-0"], "sourceHost": "host-1", "snapshots": ["4bc21d6f", "latest"]},
        {"targetHosts": ["host-1", "host-2"], "paths": ["/source/data"], "include": ["*.txt"]},
        {"paths": ["/source/data"]},
    ]
    assert rule_problems([Rule.from_dict(r) for r in rules]) == []
