"""``stashlet-agent wipe`` with the real restic: every snapshot forgotten and its data pruned, nothing
else of the backend's data left; a backend without a repository has nothing to wipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from stashlet.agent.restic.runner import Restic
from stashlet.agent.wipe import wipe

pytestmark = pytest.mark.restic


def pack_files(repo: Path) -> list[Path]:
    return [p for p in (repo / "data").rglob("*") if p.is_file()]


async def test_every_snapshot_of_every_host_is_forgotten_and_its_data_pruned(
    initialized: Restic, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_bytes(b"backed-up data " * 1000)
    await initialized.backup([str(source)], host="host-0")
    await initialized.backup([str(source)], host="other-configuration")
    repo = tmp_path / "repo"
    assert len(await initialized.snapshots()) == 2
    assert pack_files(repo)

    assert await wipe(initialized) == 2

    assert await initialized.snapshots() == []
    assert pack_files(repo) == []  # no backed-up byte stays
    assert (repo / "config").is_file()  # the empty restic repository does: same password, reusable
    assert await wipe(initialized) == 0  # a second run finds nothing


async def test_a_backend_without_a_repository_has_nothing_to_wipe(restic: Restic) -> None:
    assert await wipe(restic) == 0
