"""Parsers of restic's --json output; the samples are lines printed by restic 0.18.1."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stashlet.agent.restic import output as rj

SNAP_A = "9d049f815ded49446da1c246822196c0f87012cd541c92cfbb8b99e27a8a94ca"
SNAP_B = "9f5866e2a3293643e78a185e9b4eddeaf25dd52f0cfe94d5261e0bfef682bd55"

BACKUP_STATUS = (
    '{"message_type":"status","seconds_elapsed":1,"seconds_remaining":8,"percent_done":0.10546875,'
    '"total_files":1,"total_bytes":4294967296,"bytes_done":452984832,"error_count":1,'
    '"current_files":["/sparse/z.bin"]}'
)
BACKUP_SUMMARY = (
    '{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":2,'
    '"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":3,"data_added":101412,'
    '"data_added_packed":101133,"total_files_processed":2,"total_bytes_processed":100006,'
    '"total_duration":0.719790426,"backup_start":"2026-11-25T12:09:51.587642547Z",'
    '"backup_end":"2026-11-25T12:09:52.307432974Z","snapshot_id":"' + SNAP_A + '"}'
)
BACKUP_ERROR = (
    '{"message_type":"error","error":{"message":"failed to save /proc/self/mem: read /proc/self/mem: '
    'input/output error"},"during":"archival","item":"/proc/self/mem"}'
)
EXIT_ERROR = (
    '{"message_type":"exit_error","code":3,"message":"Warning: at least one source file could not be read"}'
)
SNAPSHOT_A = (
    '{"time":"2026-11-25T12:09:51.587642547Z","tree":"0d38ba24","paths":["/tmp/rx/data"],"hostname":"h0",'
    '"username":"root","program_version":"restic 0.18.1",'
    '"summary":{"backup_start":"2026-11-25T12:09:51.587642547Z",'
    '"backup_end":"2026-11-25T12:09:52.307432974Z","files_new":2,"files_changed":0,"files_unmodified":0,'
    '"dirs_new":2,"data_blobs":2,"tree_blobs":3,"data_added":101412,"data_added_packed":101133,'
    '"total_files_processed":2,"total_bytes_processed":100006},"id":"' + SNAP_A + '","short_id":"9d049f81"}'
)
SNAPSHOT_B = (
    '{"time":"2026-11-25T12:09:52.325825181Z","parent":"' + SNAP_A + '","tree":"0d38ba24",'
    '"paths":["/tmp/rx/data"],"hostname":"h0","username":"root","tags":["a","b"],"id":"' + SNAP_B + '"}'
)
PRUNE_TEXT = """warning: running prune without a cache, this may be very slow!
loading indexes...
[0:00] 100.00%  3 / 3 snapshots
to repack:             0 blobs / 0 B
done
"""


def test_backup_status_fields() -> None:
    """A backup status line gives every documented progress field."""
    status = rj.parse_backup_message(BACKUP_STATUS)
    assert status == rj.BackupStatus(
        percent_done=0.10546875,
        total_files=1,
        files_done=0,  # omitted by restic while zero
        total_bytes=4294967296,
        bytes_done=452984832,
        seconds_elapsed=1,
        seconds_remaining=8,
        error_count=1,
        current_files=("/sparse/z.bin",),
    )


def test_backup_summary_fields() -> None:
    """A backup summary gives the counters, sizes, duration, snapshot ID and start/end times."""
    summary = rj.parse_backup_message(BACKUP_SUMMARY)
    assert isinstance(summary, rj.BackupSummary)
    assert (summary.files_new, summary.files_changed, summary.files_unmodified) == (2, 0, 0)
    assert (summary.dirs_new, summary.dirs_changed, summary.dirs_unmodified) == (2, 0, 0)
    assert (summary.data_blobs, summary.tree_blobs) == (2, 3)
    assert (summary.data_added, summary.data_added_packed) == (101412, 101133)
    assert (summary.total_files_processed, summary.total_bytes_processed) == (2, 100006)
    assert summary.total_duration == pytest.approx(0.719790426)
    assert summary.snapshot_id == SNAP_A
    assert summary.backup_start == datetime(2026, 11, 25, 12, 9, 51, 587642, tzinfo=UTC)
    assert summary.backup_end == datetime(2026, 11, 25, 12, 9, 52, 307432, tzinfo=UTC)
    assert summary.dry_run is False


def test_backup_summary_without_optional_fields() -> None:
    """A dry run summary has no snapshot ID; absent data_added_packed stays None, not 0."""
    summary = rj.parse_backup_message('{"message_type":"summary","dry_run":true,"files_new":1}')
    assert isinstance(summary, rj.BackupSummary)
    assert summary.dry_run is True
    assert summary.snapshot_id is None
    assert summary.data_added_packed is None
    assert summary.backup_start is None


def test_backup_error_names_the_item() -> None:
    """An error line keeps the path restic could not read, what it was doing and the message."""
    error = rj.parse_backup_message(BACKUP_ERROR)
    assert error == rj.ItemError(
        message="failed to save /proc/self/mem: read /proc/self/mem: input/output error",
        during="archival",
        item="/proc/self/mem",
    )
    assert rj.parse_diagnostic(BACKUP_ERROR) == error


def test_exit_error() -> None:
    """The final exit_error line gives restic's exit code and message."""
    assert rj.parse_diagnostic(EXIT_ERROR) == rj.ExitError(
        code=3, message="Warning: at least one source file could not be read"
    )


def test_check_error_has_a_flat_message() -> None:
    """The error lines of check put the text directly in 'message' and still parse as ItemError."""
    line = '{"message_type":"error","message":"  id de7d8f35 not found in repository\\n"}'
    error = rj.parse_diagnostic(line)
    assert error == rj.ItemError(message="  id de7d8f35 not found in repository\n", during="", item="")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "signal interrupt received, cleaning up",
        "\x1b[2Ksome terminal text",
        "[1, 2]",
        "42",
        "{not json",
        '{"message_type":"something_new","x":1}',
        '{"no_type": true}',
        b"\xff\xfe binary",
    ],
)
def test_unknown_or_plain_lines_are_ignored(line: str | bytes) -> None:
    """Plain text, non-objects, broken JSON and unknown message types give None, never an exception."""
    assert rj.parse_backup_message(line) is None
    assert rj.parse_restore_message(line) is None
    assert rj.parse_diagnostic(line) is None
    assert rj.parse_check_summary(line) is None


def test_unknown_keys_and_wrong_types_are_tolerated() -> None:
    """New fields are ignored; a field of the wrong type reads as its default rather than failing."""
    line = (
        '{"message_type":"status","percent_done":"half","total_files":true,"files_done":3.0,'
        '"current_files":"not-a-list","brand_new":{"x":1}}'
    )
    status = rj.parse_backup_message(line.encode())
    assert isinstance(status, rj.BackupStatus)
    assert (status.percent_done, status.total_files, status.files_done) == (0.0, 0, 3)
    assert status.current_files == ()


def test_restore_messages() -> None:
    """Restore status, summary and verbose_status lines parse with their own fields."""
    status = rj.parse_restore_message(
        '{"message_type":"status","seconds_elapsed":2,"percent_done":0.5,"total_files":6,"files_restored":3,'
        '"total_bytes":100006,"bytes_restored":50003}'
    )
    assert status == rj.RestoreStatus(
        seconds_elapsed=2,
        percent_done=0.5,
        total_files=6,
        files_restored=3,
        files_skipped=0,
        files_deleted=0,
        total_bytes=100006,
        bytes_restored=50003,
        bytes_skipped=0,
    )
    summary = rj.parse_restore_message(
        '{"message_type":"summary","total_files":6,"files_restored":6,"total_bytes":100006,"bytes_restored":100006}'
    )
    assert isinstance(summary, rj.RestoreSummary)
    assert (summary.total_files, summary.files_restored, summary.bytes_restored) == (6, 6, 100006)
    verbose = rj.parse_restore_message(
        '{"message_type":"verbose_status","action":"unchanged","item":"/data/a.txt","size":6}'
    )
    assert verbose == rj.RestoreVerboseStatus(action="unchanged", item="/data/a.txt", size=6)
    error = rj.parse_restore_message(
        '{"message_type":"error","error":{"message":"permission denied"},"during":"restore","item":"/x"}'
    )
    assert error == rj.ItemError(message="permission denied", during="restore", item="/x")


def test_snapshots_document() -> None:
    """The snapshots array gives typed snapshots with tags, parent and the stored summary."""
    snapshots = rj.parse_snapshots(f"[{SNAPSHOT_A},{SNAPSHOT_B}]\n")
    assert [s.id for s in snapshots] == [SNAP_A, SNAP_B]
    first, second = snapshots
    assert first.short_id == "9d049f81"
    assert first.hostname == "h0"
    assert first.paths == ("/tmp/rx/data",)
    assert first.tags == ()
    assert first.parent is None
    assert first.program_version == "restic 0.18.1"
    assert first.time == datetime(2026, 11, 25, 12, 9, 51, 587642, tzinfo=UTC)
    assert first.summary is not None
    assert (first.summary.files_new, first.summary.total_bytes_processed) == (2, 100006)
    assert second.parent == SNAP_A
    assert second.tags == ("a", "b")
    assert second.short_id == SNAP_B[:8]  # derived when restic leaves it out
    assert second.summary is None


def test_empty_and_garbled_snapshot_documents() -> None:
    """No snapshots, or output that is not an array, give an empty list."""
    assert rj.parse_snapshots("[]") == []
    assert rj.parse_snapshots("") == []
    assert rj.parse_snapshots('{"not": "a list"}') == []


def test_forget_counts_kept_and_removed() -> None:
    """The groups of forget list kept and removed snapshots and why each kept one was kept."""
    text = (
        f'[{{"tags":null,"host":"h0","paths":["/tmp/rx/data"],"keep":[{SNAPSHOT_B}],"remove":[{SNAPSHOT_A}],'
        f'"reasons":[{{"snapshot":{SNAPSHOT_B},"matches":["last snapshot"]}}]}},'
        f'{{"tags":["x"],"host":"h1","paths":["/d"],"keep":[{SNAPSHOT_A}],"remove":null,"reasons":[]}}]'
    )
    result = rj.parse_forget(text)
    assert len(result.groups) == 2
    first, second = result.groups
    assert (first.host, first.paths, first.tags) == ("h0", ("/tmp/rx/data",), ())
    assert [s.id for s in first.keep] == [SNAP_B]
    assert [s.id for s in first.remove] == [SNAP_A]
    assert first.reasons == (rj.KeepReason(snapshot_id=SNAP_B, matches=("last snapshot",)),)
    assert second.tags == ("x",)
    assert second.remove == ()
    assert result.removed_count == 1
    assert [s.id for s in result.removed] == [SNAP_A]
    assert [s.id for s in result.kept] == [SNAP_B, SNAP_A]


def test_forget_with_prune_text_mixed_in() -> None:
    """With --prune restic prints prune's text after the JSON line; the JSON is still found."""
    text = f'[{{"host":"h0","paths":["/d"],"keep":[{SNAPSHOT_B}],"remove":[{SNAPSHOT_A}]}}]\n{PRUNE_TEXT}'
    assert rj.parse_forget(text).removed_count == 1
    assert rj.parse_forget(PRUNE_TEXT).groups == ()
    assert rj.parse_forget("").groups == ()


def test_stats_raw_data_and_restore_size() -> None:
    """The stats document in both modes; what a mode does not print reads as 0."""
    raw = rj.parse_stats(
        '{"total_size":102188,"total_uncompressed_size":104088,"compression_ratio":1.0185931811954436,'
        '"compression_progress":100,"compression_space_saving":1.8253785258627309,"total_blob_count":10,'
        '"snapshots_count":3}'
    )
    assert (raw.total_size, raw.total_uncompressed_size, raw.total_blob_count, raw.snapshots_count) == (
        102188,
        104088,
        10,
        3,
    )
    assert raw.total_file_count == 0
    assert raw.compression_ratio == pytest.approx(1.0186, rel=1e-3)
    assert raw.compression_progress == 100.0
    size = rj.parse_stats('{"total_size":300018,"total_file_count":15,"snapshots_count":3}\n')
    assert (size.total_size, size.total_file_count, size.snapshots_count) == (300018, 15, 3)


def test_check_summary() -> None:
    """The summary of check says whether errors were found and what restic suggests."""
    healthy = rj.parse_check_summary(
        '{"message_type":"summary","num_errors":0,"broken_packs":null,"suggest_repair_index":false,'
        '"suggest_prune":false}'
    )
    assert healthy == rj.CheckResult(
        ok=True, num_errors=0, broken_packs=(), suggest_repair_index=False, suggest_prune=False
    )
    damaged = rj.parse_check_summary(
        '{"message_type":"summary","num_errors":2,"broken_packs":["d222e931"],"suggest_repair_index":false,'
        '"suggest_prune":true}'
    )
    assert damaged is not None
    assert (damaged.ok, damaged.num_errors, damaged.broken_packs, damaged.suggest_prune) == (
        False,
        2,
        ("d222e931",),
        True,
    )


def test_lock_document() -> None:
    """The multi-line JSON of cat lock gives holder host, pid, time and exclusiveness (uid 0 omitted)."""
    text = """{
  "time": "2026-11-25T12:10:34.115330344Z",
  "exclusive": false,
  "hostname": "vm",
  "username": "root",
  "pid": 19833
}"""
    lock = rj.parse_lock(text, "445a606c")
    assert lock == rj.Lock(
        id="445a606c",
        time=datetime(2026, 11, 25, 12, 10, 34, 115330, tzinfo=UTC),
        exclusive=False,
        hostname="vm",
        username="root",
        pid=19833,
        uid=0,
        gid=0,
    )


def test_ids_init_and_version() -> None:
    """The output of list gives 64-hex IDs only; init gives the repository ID; version parses both forms."""
    ident = "445a606c696dec0eaab3b96d7315c9fb0ad861a26533cb911621a07caf28f67b"
    assert rj.parse_ids(f"{ident}\nnot an id\n\n{ident[:8]}\n") == [ident]
    init = '{"message_type":"initialized","id":"24e678f0","repository":"/tmp/rx/repo"}\n'
    assert rj.parse_init(init) == "24e678f0"
    assert rj.parse_init("created restic repository") == ""
    from_json = rj.parse_version(
        '{"message_type":"version","version":"0.18.1","go_version":"go1.26.8","go_os":"linux","go_arch":"amd64"}'
    )
    assert from_json == rj.ResticVersion("0.18.1", (0, 18, 1), "go1.26.8", "linux", "amd64")
    from_text = rj.parse_version("restic 0.17.3 compiled with go1.23.1 on linux/amd64\n")
    assert from_text is not None
    assert from_text.number == (0, 17, 3)
    assert rj.parse_version("restic 0.18.1-dev (compiled manually)") is not None
    assert rj.parse_version("no version here") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-25T12:09:51.587642547Z", datetime(2026, 11, 25, 12, 9, 51, 587642, tzinfo=UTC)),
        ("2026-11-25T12:09:51Z", datetime(2026, 11, 25, 12, 9, 51, tzinfo=UTC)),
        ("2026-11-25T13:09:51.5+01:00", datetime(2026, 11, 25, 12, 9, 51, 500000, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    """The RFC 3339 times of restic (nanoseconds, Z or offsets) parse; anything else is None."""
    assert rj.parse_time(value) == expected
