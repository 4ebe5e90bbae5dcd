"""Retention policy -> the arguments of ``restic forget``, pure.

The policy is read through :class:`RetentionPolicyLike`, a protocol with the snake_case attribute
names of ``stashlet.api.repository.RetentionPolicy`` (the pydantic model of a BackupConfiguration's
``spec.retentionPolicy``), so that model and :class:`Retention` (a plain dataclass for callers and
tests) both fit without this module importing the API package.

A ``keep_*`` of ``None`` or ``0`` is unset (Stash's wire form omits zero; restic reads ``--keep-last 0``
the same way), ``-1`` means "keep all in this bucket" (restic's ``unlimited``: its command line refuses
the number), anything below that is refused. A policy that keeps nothing is refused with
:class:`EmptyRetentionPolicy`: such a ``forget`` would delete every snapshot of the group (restic 0.18
refuses it too: "no policy was specified"). The CRD refuses all of these at the API server already
(``stashlet.api.repository``); these refusals are the last line for an object stored before its rules.

A ``forget`` is always scoped to the snapshots its caller owns: one ``--host`` per host (restic takes
the snapshots of any of them) and one ``--path`` per path (restic takes the snapshots that hold all of
them), grouped by ``host,paths``. Several configurations may share one repository; an unscoped
``forget`` would apply one configuration's policy to another's snapshots, so an empty host list is
refused with :class:`UnscopedRetention`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from stashlet.agent.errors import RefuseInput
from stashlet.api.repository import KEEP_TAG_MESSAGE, KEEP_TAG_PATTERN

DEFAULT_GROUP_BY = "host,paths"

_KEEP_FLAGS = (
    ("keep_last", "--keep-last"),
    ("keep_hourly", "--keep-hourly"),
    ("keep_daily", "--keep-daily"),
    ("keep_weekly", "--keep-weekly"),
    ("keep_monthly", "--keep-monthly"),
    ("keep_yearly", "--keep-yearly"),
)


class RetentionPolicyLike(Protocol):
    """What the builder reads from a retention policy (read-only, so models and dataclasses fit)."""

    @property
    def keep_last(self) -> int | None: ...  # noqa: D102
    @property
    def keep_hourly(self) -> int | None: ...  # noqa: D102
    @property
    def keep_daily(self) -> int | None: ...  # noqa: D102
    @property
    def keep_weekly(self) -> int | None: ...  # noqa: D102
    @property
    def keep_monthly(self) -> int | None: ...  # noqa: D102
    @property
    def keep_yearly(self) -> int | None: ...  # noqa: D102
    @property
    def keep_tags(self) -> Sequence[str] | None: ...  # noqa: D102
    @property
    def prune(self) -> bool | None: ...  # noqa: D102
    @property
    def dry_run(self) -> bool | None: ...  # noqa: D102


@dataclass(frozen=True)
class Retention:
    """A retention policy as plain data; satisfies :class:`RetentionPolicyLike`."""

    name: str = ""
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_tags: Sequence[str] | None = None
    prune: bool | None = None
    dry_run: bool | None = None


class RetentionError(RefuseInput):
    """A retention policy that cannot be turned into a safe ``restic forget``."""

    reason = "InvalidRetentionPolicy"


class EmptyRetentionPolicy(RetentionError):
    """The policy keeps nothing: running it would forget every snapshot."""

    reason = "EmptyRetentionPolicy"


class UnscopedRetention(RetentionError):
    """No host to scope the forget to: it would apply the policy to every host's snapshots."""

    reason = "UnscopedRetentionPolicy"


def forget_args(
    policy: RetentionPolicyLike,
    *,
    hosts: Sequence[str],
    paths: Sequence[str] = (),
    group_by: str = DEFAULT_GROUP_BY,
    prune: bool | None = None,
) -> list[str]:
    """The arguments that follow ``restic forget`` to apply ``policy`` to the snapshots of ``hosts``.

    ``hosts`` (at least one) and ``paths`` restrict which snapshots are considered (``--host``,
    ``--path``); snapshots are grouped by ``group_by`` (restic's default, ``host,paths``, made
    explicit). ``prune`` (None: the policy's own ``prune``) adds ``--prune``: a caller running several
    ``forget`` in a row prunes once, with the last. String values are joined to their flag with ``=``
    so a value can never be read as another flag. Raises :class:`UnscopedRetention` without a host,
    :class:`EmptyRetentionPolicy` if nothing would be kept, :class:`RetentionError` for values restic
    would misread.
    """
    if not hosts:
        raise UnscopedRetention(
            "refusing to build a restic forget without --host: it would apply the policy to the snapshots "
            "of every host in the repository, other configurations' included"
        )
    args: list[str] = []
    for attribute, flag in _KEEP_FLAGS:
        value = getattr(policy, attribute)
        if value is None or value == 0:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise RetentionError(f"{attribute} must be a positive count or -1 (keep all), not {value!r}")
        args += [flag, "unlimited" if value == -1 else str(value)]
    for tag in policy.keep_tags or ():
        if not isinstance(tag, str) or not re.fullmatch(KEEP_TAG_PATTERN, tag):
            raise RetentionError(f"keep_tags entry {tag!r} {KEEP_TAG_MESSAGE}")
        args.append(f"--keep-tag={tag}")
    if not args:
        raise EmptyRetentionPolicy(
            "retention policy keeps no snapshot (set one of keepLast, keepHourly, keepDaily, keepWeekly, "
            "keepMonthly, keepYearly or keepTags); refusing to build a forget that would delete them all"
        )
    args.append(f"--group-by={_checked(group_by, 'group_by')}")
    args += [f"--host={_checked(host, 'host')}" for host in dict.fromkeys(hosts)]
    args += [f"--path={_checked(path, 'path')}" for path in paths]
    if policy.prune if prune is None else prune:
        args.append("--prune")
    if policy.dry_run:
        args.append("--dry-run")
    return args


def keeps_something(args: Sequence[str]) -> bool:
    """Whether ``forget`` arguments hold a long ``--keep-*`` option (the runner's last line of defence)."""
    return any(arg.startswith("--keep-") for arg in args)


def names_a_host(args: Sequence[str]) -> bool:
    """Whether ``forget`` arguments hold a ``--host=`` filter (the runner's last line of defence)."""
    return any(arg.startswith("--host=") and len(arg) > len("--host=") for arg in args)


def _checked(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RetentionError(f"{what} must be a non-empty string, not {value!r}")
    if "\x00" in value or "\n" in value:
        raise RetentionError(f"{what} must not contain NUL or newline characters")
    return value
