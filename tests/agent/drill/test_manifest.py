"""The drill's listing reader and tree comparison, on a real folder (no restic: the listing lines are
restic 0.18's ``ls --json`` lines as it prints them)."""

from __future__ import annotations

import json
from pathlib import Path

from stashlet.agent.drill.manifest import DIFFERS, MISSING, UNEXPECTED, Entry, SnapshotManifest, compare
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


def listing() -> SnapshotManifest:
    found = SnapshotManifest()
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
    return found


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


def test_the_listing_is_read_with_unix_modes() -> None:
    found = listing()
    assert found.snapshot is not None and found.snapshot.short_id == "3f8e113e"
    assert found.entries["/data"] == Entry("dir", 0, 0o750)
    assert found.entries["/data/a.txt"] == Entry("file", 3, 0o640)
    assert found.entries["/data/link"].type == "symlink"
    assert found.files == 2


def test_a_tree_as_listed_has_no_mismatch(tmp_path: Path) -> None:
    tree(tmp_path)
    assert compare(listing().entries, tmp_path) == []


def test_missing_extra_and_different_entries_are_each_named(tmp_path: Path) -> None:
    data = tree(tmp_path)
    (data / "a.txt").unlink()
    (data / "sub" / "b.bin").write_bytes(b"1234")
    (data / "sub" / "b.bin").chmod(0o600)
    (data / "extra").write_text("x")
    (data / "sub").chmod(0o700)

    found = compare(listing().entries, tmp_path)

    assert [(m.path, m.kind) for m in found] == [
        ("/data/a.txt", MISSING),
        ("/data/extra", UNEXPECTED),
        ("/data/sub", DIFFERS),
        ("/data/sub/b.bin", DIFFERS),
    ]
    assert found[0].describe() == "/data/a.txt: missing from the restored data (file, 3 bytes, mode 0640)"
    assert found[2].detail == "restored with mode 0700, the snapshot holds 0755"
    assert found[3].detail == "restored with 4 bytes, the snapshot holds 5"


def test_a_file_restored_as_a_folder_differs_by_type(tmp_path: Path) -> None:
    data = tree(tmp_path)
    (data / "a.txt").unlink()
    (data / "a.txt").mkdir(mode=0o640)
    found = compare(listing().entries, tmp_path)
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
