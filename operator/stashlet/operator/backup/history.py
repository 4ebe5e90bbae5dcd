"""``spec.backupHistoryLimit``: which finished BackupSessions of a configuration to delete: pure.

The ``limit`` most recent finished sessions (Succeeded, Failed or Skipped) are kept, 1 when the
configuration sets no limit (Stash's default); older finished ones go. Sessions that are still pending or
running are never deleted, whatever their age.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stashlet.api.backupsession import BackupSessionPhase

DEFAULT_LIMIT = 1
FINISHED = frozenset({BackupSessionPhase.SUCCEEDED, BackupSessionPhase.FAILED, BackupSessionPhase.SKIPPED})


@dataclass(frozen=True)
class SessionInfo:
    """What pruning needs to know about one BackupSession."""

    name: str
    phase: str | None
    created: str
    """``metadata.creationTimestamp`` as the server wrote it (RFC 3339, so it sorts as text)."""

    @property
    def finished(self) -> bool:
        """True once the session succeeded, failed or was skipped."""
        return self.phase in FINISHED


def to_prune(sessions: Iterable[SessionInfo], limit: int | None) -> list[str]:
    """Names of the finished sessions beyond the newest ``limit`` ones, oldest last."""
    keep = DEFAULT_LIMIT if limit is None else max(limit, 0)
    finished = sorted((s for s in sessions if s.finished), key=lambda s: (s.created, s.name), reverse=True)
    return [s.name for s in finished[keep:]]
