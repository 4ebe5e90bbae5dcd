"""The retention values the CRD takes and refuses, against the real pinned restic (0.18.1).

The CRD's rules (tests/api/test_refusals.py) refuse only what restic itself refuses: a count below -1
and a policy without a rule. What it takes runs as restic means it: -1 is ``unlimited`` (restic's command
line refuses the number -1 itself, so the agent writes the word), 0 is no rule at all, exactly as
``--keep-last 0`` is to restic.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stashlet.agent.restic.retention import Retention, forget_args
from stashlet.agent.restic.runner import Restic

from ..conftest import local_repository

pytestmark = pytest.mark.restic

HOST = "host-0"


async def three_snapshots(restic: Restic, tmp_path: Path) -> list[str]:
    """Three snapshots of one path, one host, within the same hour."""
    data = tmp_path / "data"
    data.mkdir()
    ids = []
    for round_ in range(3):
        (data / "file").write_text(str(round_))
        snapshot = (await restic.backup([str(data)], host=HOST)).snapshot_id
        assert snapshot is not None
        ids.append(snapshot)
    return ids


def raw_forget(restic_binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """restic's own forget on the test's repository, as a user would type it."""
    env = dict(local_repository(tmp_path / "repo").env)
    return subprocess.run(
        [restic_binary, "--no-cache", "forget", "--dry-run", f"--host={HOST}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--keep-last", "-5"), "negative values not allowed"),
        (("--keep-daily", "-2"), "negative values not allowed"),
        (("--keep-last", "-1"), "negative values not allowed, use 'unlimited' instead"),
        ((), "no policy was specified"),
        (("--keep-last", "0", "--prune"), "no policy was specified"),
    ],
)
async def test_restic_refuses_what_the_crd_refuses(
    initialized: Restic, tmp_path: Path, restic_binary: str, args: tuple[str, ...], words: str
) -> None:
    """restic 0.18.1 refuses a negative count on its command line and a forget without a rule: these are
    the values the CRD refuses (and -1, which the agent writes as 'unlimited')."""
    await three_snapshots(initialized, tmp_path)
    result = raw_forget(restic_binary, tmp_path, *args)
    assert result.returncode != 0
    assert words in result.stderr
    assert len(await initialized.snapshots()) == 3


async def test_minus_one_keeps_every_snapshot(initialized: Restic, tmp_path: Path) -> None:
    """keepLast -1 beside keepDaily 1: restic keeps all three (unlimited), where keepDaily 1 alone keeps
    one of the day's three."""
    ids = await three_snapshots(initialized, tmp_path)
    daily = await initialized.forget(forget_args(Retention(keep_daily=1, dry_run=True), hosts=[HOST]))
    assert daily.removed_count == 2
    both = await initialized.forget(forget_args(Retention(keep_last=-1, keep_daily=1), hosts=[HOST]))
    assert both.removed_count == 0
    assert sorted(s.id for s in both.kept) == sorted(ids)
    assert len(await initialized.snapshots()) == 3


async def test_zero_is_no_rule_as_restic_reads_it(
    initialized: Restic, tmp_path: Path, restic_binary: str
) -> None:
    """keepLast 0 beside keepDaily 1 is keepDaily 1 alone: the agent leaves 0 out, and restic itself reads
    ``--keep-last 0`` the same way (same snapshots removed)."""
    ids = await three_snapshots(initialized, tmp_path)
    args = forget_args(Retention(keep_last=0, keep_daily=1), hosts=[HOST])
    assert args == forget_args(Retention(keep_daily=1), hosts=[HOST])
    restic_says = raw_forget(restic_binary, tmp_path, "--json", "--keep-last", "0", "--keep-daily", "1")
    assert restic_says.returncode == 0, restic_says.stderr
    result = await initialized.forget(args)
    assert [s.id for s in result.kept] == [ids[-1]]
    assert {s.id for s in result.removed} == set(ids[:2])
    [group] = json.loads(restic_says.stdout)
    assert [s["id"] for s in group["keep"]] == [ids[-1]]
    assert {s["id"] for s in group["remove"]} == set(ids[:2])
