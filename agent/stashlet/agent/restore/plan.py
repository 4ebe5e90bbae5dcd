"""What one host of a RestoreSession restores, and how to tell that it all came back: pure.

**Rules, as Stash matches them** (stashed/stash ``pkg/util/options.go`` ``RestoreOptionsForHost``). The
rules are ``spec.target.rules`` (or the deprecated ``spec.rules``). A host takes the first rule whose
``targetHosts`` names it, else the last rule without ``targetHosts``, else none: it restores nothing.
``sourceHost`` defaults to the host itself (a restore into another workload names the host whose data it
wants). ``snapshots`` and ``paths`` exclude each other. ``paths`` restores each path from the latest
snapshot of the source host holding it (``restic restore latest --host <source> --path <path>``, as
Stash does: a repository Stash wrote holds one snapshot per path). ``snapshots`` restores each snapshot
named, ``latest`` being the latest snapshot of the source host. A session with no rules, or a rule with
neither, would restore nothing and is refused before anything runs. restic refuses ``include`` together
with ``exclude``, so a rule may not have both. Every rule is validated
(:func:`stashlet.api.restore_rules.rule_problems`), not only the one that matches, and an error names
the rule's index.

**Where data goes.** A snapshot holds absolute paths (``/source/data``) and, in the Stash model, the pod
mounts the volume at that same path. Each backed-up path is restored on its own, from the snapshot's
subtree into the path itself (``restic restore <id>:/source/data --target /source/data``), not the whole
snapshot under ``--target /``: restic then writes nothing outside the volume. (Under ``--target /`` restic
also resets the owner, mode and times of every parent directory, ``/source`` and ``/`` included, which
fails on a read-only root file system and changes directories that belong to the container image.) The
volume root's own metadata, which the subtree restore leaves alone, is applied from the snapshot
afterwards. Include and exclude patterns, written against the absolute paths as Stash documents them,
are rebased onto each subtree with restic's matching rules (a pattern without a leading ``/`` matches
at any depth; a pattern matching a directory matches everything below it).

**Verification** is in :mod:`.listing`.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from stashlet.agent.errors import RefuseInput
from stashlet.api.restore_rules import LATEST
from stashlet.api.restoresession import Rule

_FORBIDDEN_ARGS = {
    "--target": "the agent restores each path into its own place",
    "-t": "the agent restores each path into its own place",
    "--include": "use the rule's include",
    "-i": "use the rule's include",
    "--iinclude": "use the rule's include",
    "--exclude": "use the rule's exclude",
    "-e": "use the rule's exclude",
    "--iexclude": "use the rule's exclude",
    "--dry-run": "a dry run restores nothing",
    "--include-file": "use the rule's include",
    "--exclude-file": "use the rule's exclude",
}
_SAFE_OVERWRITE = ("always", "if-changed")


class PlanError(RefuseInput):
    """The RestoreSession asks for something that cannot be restored; ``reason`` is condition-style."""


# ----------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class HostRule:
    """What this host restores: from which host, which snapshots (``latest`` or IDs) or paths."""

    host: str
    source_host: str
    snapshots: tuple[str, ...]
    """``latest`` and/or snapshot IDs, in the order given (never empty)."""
    paths: tuple[str, ...]
    """With ``latest`` only: restrict to these paths, each from its latest snapshot."""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    index: int | None = None
    """The rule's index in ``rules``."""


def match_rule(rules: Sequence[Rule], host: str) -> HostRule | None:
    """The rule for ``host``, as Stash picks it: the first naming it, else the last without targetHosts;
    None if none applies or the rule names neither paths nor snapshots (nothing to restore)."""
    chosen: tuple[int, Rule] | None = None
    for i, rule in enumerate(rules):
        if host in (rule.target_hosts or []):
            chosen = (i, rule)
            break
        if not rule.target_hosts:
            chosen = (i, rule)
    if chosen is None:
        return None
    index, rule = chosen
    if not rule.snapshots and not rule.paths:
        return None
    snapshots = tuple(dict.fromkeys(rule.snapshots or [LATEST]))
    return HostRule(
        host=host,
        source_host=rule.source_host or host,
        snapshots=snapshots,
        paths=tuple(posixpath.normpath(p) for p in rule.paths or []),
        include=tuple(rule.include or []),
        exclude=tuple(rule.exclude or []),
        index=index,
    )


def check_extra_args(args: Sequence[str]) -> list[str]:
    """``spec.target.args`` handed to ``restic restore``; raises PlanError on one that would lie or escape."""
    for arg in args:
        name, _, value = arg.partition("=")
        if name in _FORBIDDEN_ARGS:
            raise PlanError(
                f"spec.target.args: {arg!r} is not allowed: {_FORBIDDEN_ARGS[name]}",
                reason="InvalidRestoreArgs",
            )
        if name == "--overwrite" and value not in _SAFE_OVERWRITE:
            raise PlanError(
                f"spec.target.args: {arg!r} is not allowed: a file left as it was would count as restored "
                f"(use one of {', '.join(_SAFE_OVERWRITE)}, as a separate --overwrite=VALUE)",
                reason="InvalidRestoreArgs",
            )
        if arg == "--overwrite":
            raise PlanError(
                "spec.target.args: write --overwrite=VALUE as one argument", reason="InvalidRestoreArgs"
            )
    return list(args)


# ----------------------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class Rebased:
    """A pattern list as it applies to one subtree."""

    covers: bool
    """Some pattern matches the subtree's root (or a parent): it matches everything in the subtree."""
    patterns: tuple[str, ...]
    """The patterns rewritten relative to the subtree's root (``/`` is the root)."""


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _component_match(name: str, pattern: str) -> bool:
    # Go's filepath.Match negates a class with '^', Python's fnmatch with '!'.
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!"))


def _rebase_one(parts: list[str], base: list[str]) -> tuple[bool, set[tuple[str, ...]]]:
    """Match pattern ``parts`` against the path ``base``: (covers, what is left of the pattern below it)."""
    remainders: set[tuple[str, ...]] = set()
    seen: set[tuple[int, int]] = set()

    def walk(i: int, j: int) -> bool:
        if (i, j) in seen:
            return False
        seen.add((i, j))
        if j == len(base):
            if i == len(parts):
                return True
            remainders.add(tuple(parts[i:]))
            return False
        if i == len(parts):
            return True  # the pattern matched a parent of the root: everything below matches
        if parts[i] == "**":
            return walk(i + 1, j) or walk(i, j + 1)
        return _component_match(base[j], parts[i]) and walk(i + 1, j + 1)

    return walk(0, 0), remainders


def rebase_patterns(patterns: Sequence[str], root: str) -> Rebased:
    """``patterns`` (restic's syntax, against absolute paths) rebased onto the subtree at ``root``."""
    base = _components(root)
    covers = False
    found: dict[str, None] = {}
    for raw in patterns:
        pattern = raw.strip()
        if not pattern:
            continue
        parts = _components(pattern)
        if not pattern.startswith("/"):
            parts = ["**", *parts]  # restic: a relative pattern matches at any depth
        matched, remainders = _rebase_one(parts, base)
        covers = covers or matched
        for rest in sorted(remainders):
            found["/" + "/".join(rest)] = None
    return Rebased(covers=covers, patterns=tuple(found))
