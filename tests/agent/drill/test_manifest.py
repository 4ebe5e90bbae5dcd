"""The drill's listing reader and tree comparison, on a real folder and a real SQLite file (no restic: the
listing lines are restic 0.18's ``ls --json`` lines as it prints them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stashlet.agent.drill import manifest
from stashlet.agent.drill.manifest import DIFFERS, MISSING, UNEXPECTED, Entry, Listing
from stashlet.agent.drill.verdict import DrilledSnapshot, Verdict, failed, passed

SNAPSHOT = {
    "time": "2026-12-05T18:42:01.40017028Z",
    "tree": "73823105",
    "paths": ["/data"],
    "hostname": "host-0",
    "id": "3f8e113e4cf60468a7df25d04da9312119384f837599613b044c6375176b1fab",
    "short_id": "3f8e113e",
    "message_type": "snapshot",
    "struct_type": "snapshot",
}


def node(path: str, type_: str, mode: int, size: int | None = None) -> str:
    obj: dict[str, object] = {"name": path.rsplit("/", 1)[-1], "type": type_, "path": path, "mode": mode}
    if size is not None:
        obj["size"] = size
    obj.update({"message_type": "node", "struct_type": "node"})
    return json.dumps(obj)


@pytest.fixture
def listing(tmp_path: Path) -> Iterator[Listing]:
    """The listing of SNAPSHOT, in a file beside the restored tree (``tmp_path / "restored"``)."""
    with Listing(tmp_path / ".listing") as found:
        feed(found)
        yield found


def feed(found: Listing) -> None:
    for line in (
        json.dumps(SNAPSHOT),
        node("/data", "dir", 2147484136),  # Go: dir bit | 0750
        node("/data/a.txt", "file", 0o640, 3),
        node("/data/sub", "dir", 2147484141),  # 0755
        node("/data/sub/b.bin", "file", 0o600, 5),
        node("/data/link", "symlink", 134218239),  # Go: symlink bit | 0777
        "not json",
    ):
        found.feed(line)


def tree(root: Path) -> Path:
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("hi\n")
    (data / "a.txt").chmod(0o640)
    (data / "sub" / "b.bin").write_bytes(b"12345")
    (data / "sub" / "b.bin").chmod(0o600)
    (data / "link").symlink_to("a.txt")
    (data / "sub").chmod(0o755)
    data.chmod(0o750)
    return data


def test_the_listing_is_read_with_unix_modes(listing: Listing) -> None:
    assert listing.snapshot is not None and listing.snapshot.short_id == "3f8e113e"
    assert listing.get("/data") == Entry("dir", 0, 0o750)
    assert listing.get("/data/a.txt") == Entry("file", 3, 0o640)
    assert (listing.get("/data/link") or Entry("", 0, 0)).type == "symlink"
    assert listing.get("/data/none") is None
    assert listing.counts() == (5, 2, 8)


def test_a_tree_as_listed_has_no_mismatch(tmp_path: Path, listing: Listing) -> None:
    tree(tmp_path / "restored")
    assert list(listing.compare(tmp_path / "restored")) == []


def test_a_later_snapshot_has_the_last_word_and_the_file_goes_with_the_listing(tmp_path: Path) -> None:
    """Nodes are written in batches; a path listed again takes the later snapshot's node; closing removes
    the file."""
    with Listing(tmp_path / ".listing") as found:
        feed(found)
        found.feed(node("/data/a.txt", "file", 0o600, 7))
        assert found.get("/data/a.txt") == Entry("file", 7, 0o600)
        assert found.counts() == (5, 2, 12)
        assert (tmp_path / ".listing").exists()
    assert not (tmp_path / ".listing").exists()


def test_a_listing_larger_than_a_batch_is_compared_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifest, "BATCH", 3)
    root = tmp_path / "restored"
    (root / "data").mkdir(parents=True)
    (root / "data").chmod(0o755)
    with Listing(tmp_path / ".listing") as found:
        found.feed(node("/data", "dir", 2147484141))
        for i in range(10):
            found.feed(node(f"/data/f{i}", "file", 0o644, 1))
            if i % 2 == 0:
                (root / "data" / f"f{i}").write_text("x")
                (root / "data" / f"f{i}").chmod(0o644)
        for i in range(4):
            (root / "data" / f"extra{i}").write_text("x")
        mismatches = list(found.compare(root))
        assert found.counts() == (11, 10, 10)
    assert [(m.path, m.kind) for m in mismatches] == sorted(
        [(f"/data/extra{i}", UNEXPECTED) for i in range(4)]
        + [(f"/data/f{i}", MISSING) for i in range(1, 10, 2)]
    )


def test_missing_extra_and_different_entries_are_each_named(tmp_path: Path, listing: Listing) -> None:
    data = tree(tmp_path / "restored")
    (data / "a.txt").unlink()
    (data / "sub" / "b.bin").write_bytes(b"1234")
    (data / "sub" / "b.bin").chmod(0o600)
    (data / "extra").write_text("x")
    (data / "sub").chmod(0o700)

    found = list(listing.compare(tmp_path / "restored"))

    assert [(m.path, m.kind) for m in found] == [
        ("/data/a.txt", MISSING),
        ("/data/extra", UNEXPECTED),
        ("/data/sub", DIFFERS),
        ("/data/sub/b.bin", DIFFERS),
    ]
    assert found[0].describe() == "/data/a.txt: missing from the restored data (file, 3 bytes, mode 0640)"
    assert found[2].detail == "restored with mode 0700, the snapshot holds 0755"
    assert found[3].detail == "restored with 4 bytes, the snapshot holds 5"


def test_a_file_restored_as_a_folder_differs_by_type(tmp_path: Path, listing: Listing) -> None:
    data = tree(tmp_path / "restored")
    (data / "a.txt").unlink()
    (data / "a.txt").mkdir(mode=0o640)
    found = list(listing.compare(tmp_path / "restored"))
    assert [(m.path, m.detail) for m in found] == [
        ("/data/a.txt", "restored as a dir, the snapshot holds a file")
    ]


def test_a_verdict_survives_its_json_and_names_the_newest_snapshot() -> None:
    older = DrilledSnapshot("a" * 64, "aaaaaaaa", "host-0", ("/data",), "2026-12-05T10:00:00+00:00")
    newer = DrilledSnapshot("b" * 64, "bbbbbbbb", "host-1", ("/data",), "2026-12-05T11:00:00+00:00")
    verdict = passed("ns/bc", "ns/repo", [newer, older], 10, 100, 1.5)
    again = Verdict.from_json(verdict.to_json())
    assert again == verdict
    assert again.newest == newer
    assert verdict.message == (
        "Restore drill of BackupConfiguration ns/bc passed: snapshot bbbbbbbb (host-1: /data), aaaaaaaa "
        "(host-0: /data) of Repository ns/repo restored and matched its listing (10 files, 100 bytes checked)"
    )
    after = verdict.failed_after("CommandFailed", "the command exited with 1", 3.0)
    assert (after.passed, after.reason, after.problem_count) == (False, "CommandFailed", 1)
    assert after.message.startswith("Restore drill of BackupConfiguration ns/bc failed: the command exited")


def test_a_failed_verdict_counts_the_problems_it_does_not_show() -> None:
    problems = [f"/data/f{i}: missing" for i in range(8)]
    verdict = failed("ns/bc", "FileMissing", "snapshot x: /data/f0: missing", problems=problems)
    assert verdict.message.endswith("/data/f0: missing (and 7 more problems)")
    assert len(verdict.problems) == 5 and verdict.problem_count == 8


def test_a_verdict_of_the_first_problems_counts_them_all() -> None:
    problems = [f"/data/f{i}: missing" for i in range(5)]
    verdict = failed(
        "ns/bc", "FileMissing", "snapshot x: /data/f0: missing", problems=problems, problem_count=900
    )
    assert verdict.message.endswith("/data/f0: missing (and 899 more problems)")
    assert (len(verdict.problems), verdict.problem_count) == (5, 900)
