"""A hook's result, its condition and event as Stash words them, and what its messages leave out: pure.

Stash sets one condition per hook type: ``PreBackupHookExecutionSucceeded`` /
``PostBackupHookExecutionSucceeded`` on the BackupSession's target, ``PreRestoreHookExecutionSucceeded``
/ ``PostRestoreHookExecutionSucceeded`` on the RestoreSession; ``True`` with reason
``SuccessfullyExecuted<Type>Hook`` and "Successfully executed <type> hook." (or, for a post hook its
``executionPolicy`` skipped, the skip's own message), ``False`` with ``FailedToExecute<Type>Hook`` and
"Failed to execute <type> hook. Reason: <why>". The event stashlet records beside it has the same
reason and message (Normal or Warning).

A hook's message never holds a secret the hook's definition carries: header values, the URL's path and
query (a Slack webhook's path is its key), the body, form values and a command's arguments are replaced
by ``***`` wherever they would appear in a message (an error, a response, a command's output).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from stashlet.agent.errors import ReportFailure
from stashlet.api.conditions import ConditionReason, ConditionType
from stashlet.api.hooks import ExecAction, Hook, HookKind, HTTPAction

REDACTED: Final = "***"
MIN_SECRET: Final = 4
"""Shorter values are not masked (they would mask ordinary words); a secret is longer than this."""
OUTPUT_LIMIT: Final = 300
"""The most characters of a response or a command's output a message quotes."""


@dataclass(frozen=True)
class HookResult:
    """What happened to one hook: ran and succeeded, ran and failed, or was skipped by its policy."""

    kind: HookKind
    succeeded: bool
    message: str
    skipped: bool = False


@dataclass(frozen=True)
class HookCondition:
    """The session condition a hook's result sets (and the event recorded with it)."""

    type: ConditionType
    ok: bool
    reason: ConditionReason
    message: str

    @property
    def event_type(self) -> Literal["Normal", "Warning"]:
        """``Normal`` for a hook that ran or was skipped, ``Warning`` for one that failed."""
        return "Normal" if self.ok else "Warning"


_CONDITIONS: Final = {
    HookKind.PRE_BACKUP: (
        ConditionType.PRE_BACKUP_HOOK_EXECUTION_SUCCEEDED,
        ConditionReason.SUCCESSFULLY_EXECUTED_PRE_BACKUP_HOOK,
        ConditionReason.FAILED_TO_EXECUTE_PRE_BACKUP_HOOK,
    ),
    HookKind.POST_BACKUP: (
        ConditionType.POST_BACKUP_HOOK_EXECUTION_SUCCEEDED,
        ConditionReason.SUCCESSFULLY_EXECUTED_POST_BACKUP_HOOK,
        ConditionReason.FAILED_TO_EXECUTE_POST_BACKUP_HOOK,
    ),
    HookKind.PRE_RESTORE: (
        ConditionType.PRE_RESTORE_HOOK_EXECUTION_SUCCEEDED,
        ConditionReason.SUCCESSFULLY_EXECUTED_PRE_RESTORE_HOOK,
        ConditionReason.FAILED_TO_EXECUTE_PRE_RESTORE_HOOK,
    ),
    HookKind.POST_RESTORE: (
        ConditionType.POST_RESTORE_HOOK_EXECUTION_SUCCEEDED,
        ConditionReason.SUCCESSFULLY_EXECUTED_POST_RESTORE_HOOK,
        ConditionReason.FAILED_TO_EXECUTE_POST_RESTORE_HOOK,
    ),
}


def hook_condition(kind: HookKind, result: HookResult) -> HookCondition:
    """The condition (type, status, reason, message) Stash sets for ``result``."""
    type_, succeeded, failed = _CONDITIONS[kind]
    if not result.succeeded:
        return HookCondition(type_, False, failed, f"Failed to execute {kind} hook. Reason: {result.message}")
    message = result.message if result.skipped else f"Successfully executed {kind} hook."
    return HookCondition(type_, True, succeeded, message)


class Scrubber:
    """Masks the values of one hook's definition that may be secret in any text about it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        """Mask each of ``secrets`` (the longest first, so a part never hides the rest)."""
        found = {s for s in secrets if len(s) >= MIN_SECRET}
        self.secrets = sorted(found, key=len, reverse=True)

    @classmethod
    def of(cls, hook: Hook, *rendered: str) -> Scrubber:
        """A scrubber for ``hook`` and the texts rendered from its templates."""
        return cls([*_secrets(hook), *rendered])

    def __call__(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def quote(self, output: str | bytes) -> str:
        """The tail of a response or of a command's output, masked and cut to :data:`OUTPUT_LIMIT`."""
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        text = self(" ".join(text.split()))
        return text if len(text) <= OUTPUT_LIMIT else "..." + text[-OUTPUT_LIMIT:]


def _secrets(hook: Hook) -> list[str]:
    action = hook.action
    if isinstance(action, ExecAction):
        return list(action.command[1:])
    if not isinstance(action, HTTPAction):
        return []
    found = [h.value for h in action.headers]
    path, _, query = action.path.partition("?")
    found += [path, *[p for p in path.split("/") if p], query, *query.split("&")]
    found += [action.body, *[v for entry in action.form or () for v in entry.values]]
    return found


class HookFailed(ReportFailure):
    """A hook ran and failed (or could not run); the message says why, without secrets."""

    reason = "HookFailed"
