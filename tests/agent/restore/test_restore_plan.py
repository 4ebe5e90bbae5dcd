"""The pure parts of the restore: rule matching and validation, pattern rebasing, the ``restic ls`` count,
verification of restic's summary, and the RestoreSession status arithmetic. No servers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from stashlet.agent.restic import output as rj
from stashlet.agent.restore import status as rs
from stashlet.agent.restore.extract import describe_errors
from stashlet.agent.restore.listing import (
    RestoreItem,
    SnapshotListing,
    go_mode_to_unix,
    mount_for,
    outermost,
    parse_time_ns,
    plan_item,
    verify,
)
from stashlet.agent.restore.plan import (
    HostRule,
    PlanError,
    check_extra_args,
    match_rule,
    rebase_patterns,
)
from stashlet.api.restore_rules import LATEST
from stashlet.api.restoresession import HostRestorePhase, HostRestoreStats, RestorePhase, RestoreSession, Rule

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def rule(**fields: Any) -> Rule:
    return Rule.from_dict(fields)


# --- rules --------------------------------------------------------------------------------------------


def test_no_rules_or_a_rule_naming_nothing_restore_nothing() -> None:
    """As Stash's runRestore: no rules, or a matching rule with neither paths nor snapshots, give this
    host nothing to restore (never the whole latest snapshot); validation refuses both before this."""
    assert match_rule([], "host-2") is None
    assert match_rule([rule(sourceHost="host-0")], "host-2") is None
    assert match_rule([rule(paths=["/a"]), rule(targetHosts=["host-2"])], "host-2") is None


def test_a_catch_all_after_another_is_the_one_taken_as_in_stash() -> None:
    """Stash's RestoreOptionsForHost keeps going past a rule without targetHosts, so the last such rule
    applies (validation refuses two of them; the choice is Stash's all the same)."""
    rules = [rule(paths=["/first"]), rule(targetHosts=["host-9"], paths=["/nine"]), rule(paths=["/last"])]
    matched = match_rule(rules, "host-0")
    assert matched is not None and (matched.index, matched.paths) == (2, ("/last",))
    named = match_rule(rules, "host-9")
    assert named is not None and (named.index, named.paths) == (1, ("/nine",))


def test_a_rule_naming_the_host_wins_over_the_catch_all_in_any_order() -> None:
    """The first rule whose targetHosts names the host is taken even after a rule without targetHosts;
    others take the catch-all; sourceHost defaults to the host itself."""
    rules = [
        rule(paths=["/data"]),
        rule(targetHosts=["host-1"], sourceHost="host-0", snapshots=["abcd1234"]),
        rule(targetHosts=["host-1"], paths=["/other"]),
    ]
    named = match_rule(rules, "host-1")
    assert named is not None
    assert (named.index, named.source_host, named.snapshots, named.paths) == (1, "host-0", ("abcd1234",), ())
    other = match_rule(rules, "host-2")
    assert other is not None
    assert (other.index, other.source_host, other.snapshots, other.paths) == (
        0,
        "host-2",
        (LATEST,),
        ("/data",),
    )


def test_no_applicable_rule_means_nothing_for_this_host() -> None:
    """Rules that all name other hosts leave this host with nothing to restore."""
    assert match_rule([rule(targetHosts=["host-0"], paths=["/a"])], "host-1") is None


def test_latest_in_snapshots_is_the_latest_and_paths_are_normalised() -> None:
    """``snapshots: [latest]`` is the same as none; paths are normalised."""
    matched = match_rule([rule(snapshots=["latest"]), rule(targetHosts=["h"], paths=["/a/b/"])], "x")
    assert matched is not None and matched.snapshots == (LATEST,)
    matched = match_rule([rule(targetHosts=["h"], paths=["/a//b/"])], "h")
    assert matched is not None and matched.paths == ("/a/b",)


@pytest.mark.parametrize(
    "arg",
    ["--target=/", "-t", "--dry-run", "--include=/x", "--exclude=x", "--overwrite=never", "--overwrite"],
)
def test_restic_args_that_would_lie_or_escape_are_refused(arg: str) -> None:
    """spec.target.args may tune restic but not move the target, filter behind the rules' back, skip
    writing, or leave a differing file in place while counting it restored."""
    with pytest.raises(PlanError) as caught:
        check_extra_args([arg])
    assert caught.value.reason == "InvalidRestoreArgs"
    assert check_extra_args(["--verify", "--overwrite=if-changed", "--limit-download=100"]) == [
        "--verify",
        "--overwrite=if-changed",
        "--limit-download=100",
    ]


# --- patterns -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "root", "covers", "rebased"),
    [
        (["/data/dir"], "/data", False, ("/dir",)),
        (["/data"], "/data", True, ()),
        (["/"], "/data", True, ()),
        (["/other/x"], "/data", False, ()),
        (["*.bin"], "/data", False, ("/**/*.bin",)),
        (["data"], "/srv/data", True, ()),
        (["/srv/*/dir"], "/srv/data", False, ("/dir",)),
        (["/srv/**"], "/srv/data", True, ()),
        (["/**/cache"], "/srv/data", False, ("/**/cache",)),
        (["/srv/dat[^x]/a"], "/srv/data", False, ("/a",)),
    ],
)
def test_patterns_are_rebased_onto_the_subtree_with_restics_rules(
    patterns: list[str], root: str, covers: bool, rebased: tuple[str, ...]
) -> None:
    """Absolute patterns lose the subtree's prefix, relative ones match at any depth, a pattern matching
    the root or a parent covers the whole subtree, unrelated ones drop out; globs and ** work."""
    result = rebase_patterns(patterns, root)
    assert (result.covers, result.patterns) == (covers, rebased)


# --- listing, items, verification ---------------------------------------------------------------------


def ls_lines(paths: list[str], nodes: list[dict[str, Any]]) -> list[str]:
    snapshot = {
        "message_type": "snapshot",
        "id": "ab" * 32,
        "short_id": "abababab",
        "hostname": "host-0",
        "paths": paths,
        "time": "2026-01-01T00:00:00.123456789Z",
    }
    return [json.dumps(snapshot)] + [json.dumps({"message_type": "node", **n}) for n in nodes]


def node(path: str, type_: str = "file", size: int = 0, inode: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "name": path.rsplit("/", 1)[-1],
        "type": type_,
        "size": size,
        "inode": inode,
        **extra,
    }


LISTING = ls_lines(
    ["/data", "/etc/app.conf"],
    [
        node(
            "/data",
            "dir",
            mode=(1 << 31) | (1 << 22) | 0o750,
            uid=7,
            gid=8,
            mtime="2026-01-01T10:00:00.000000123Z",
        ),
        node("/data/a", size=10, inode=1),
        node("/data/hard", size=10, inode=1),
        node("/data/dir", "dir"),
        node("/data/dir/b", size=5, inode=2),
        node("/data/link", "symlink"),
        node("/etc", "dir"),
        node("/etc/app.conf", size=3, inode=3),
        node("/etc/other", size=99, inode=4),
    ],
)


def listing() -> SnapshotListing:
    found = SnapshotListing()
    for line in LISTING:
        found.feed(line)
    return found


def test_ls_counts_what_lies_below_each_backed_up_path() -> None:
    """The snapshot's paths come from its first line; nodes below each path are counted, hard-linked bytes
    once at the low end, and the path's own metadata is kept (Go mode bits converted)."""
    found = listing()
    assert found.paths == ("/data", "/etc/app.conf")
    data = found.by_path["/data"]
    assert (data.nodes, data.bytes_unique, data.bytes_all) == (5, 15, 25)
    assert data.root is not None
    assert (data.root.type, data.root.mode, data.root.uid, data.root.gid) == ("dir", 0o2750, 7, 8)
    base = parse_time_ns("2026-01-01T10:00:00Z")
    assert base is not None and data.root.mtime_ns == base + 123
    conf = found.by_path["/etc/app.conf"]
    assert conf.root is not None and (conf.root.type, conf.root.size, conf.nodes) == ("file", 3, 0)


def items(rule_: HostRule) -> list[RestoreItem]:
    found = listing()
    assert found.snapshot is not None
    made = []
    for path in found.paths:
        root = found.root(path)
        assert root is not None
        item = plan_item(rule_, found.snapshot.id, path, root)
        if item is not None:
            made.append(item)
    return made


ALL = HostRule(host="host-0", source_host="host-0", snapshots=(LATEST,), paths=())


def test_items_restore_each_path_from_its_own_subtree() -> None:
    """A directory is restored from its subtree into itself (its own metadata applied afterwards); a single
    file from its parent with an include of its name (nothing else of the parent)."""
    data, conf = items(ALL)
    assert (data.snapshot_arg, data.target, data.include, data.counted) == (
        f"{'ab' * 32}:/data",
        "/data",
        (),
        True,
    )
    assert data.root is not None
    assert (conf.snapshot_arg, conf.target, conf.include, conf.root) == (
        f"{'ab' * 32}:/etc",
        "/etc",
        ("/app.conf",),
        None,
    )


def test_patterns_decide_which_paths_run_and_whether_they_are_counted() -> None:
    """An include for one path skips the other; an exclude covering a path skips it; narrowing patterns
    leave the count to restic's filter; nested backed-up paths are restored through the outer one."""
    (only,) = items(HostRule("h", "h", (LATEST,), (), include=("/data/dir",)))
    assert (only.path, only.include, only.counted) == ("/data", ("/dir",), False)
    (kept,) = items(HostRule("h", "h", (LATEST,), (), exclude=("/etc",)))
    assert (kept.path, kept.counted) == ("/data", True)
    assert outermost(["/data/sub", "/data", "/database", "/data"]) == ("/data", "/database")


def summary(restored: int, skipped: int, written: int) -> rj.RestoreSummary:
    return rj.RestoreSummary(0, restored, restored, skipped, 0, written, written, 0)


def test_verification_demands_every_item_and_byte() -> None:
    """restored + skipped must equal the listed nodes, bytes must lie between the hard-link-aware bounds
    (a single file: exactly one item of its size); a filtered item is left to restic's exit status."""
    found = listing()
    data, conf = items(ALL)
    below = found.by_path["/data"]
    assert verify(data, summary(5, 0, 15), below) is None
    assert verify(data, summary(3, 2, 25), below) is None
    missing = verify(data, summary(4, 0, 15), below)
    assert missing is not None and "4 of the 5 items" in missing
    short = verify(data, summary(5, 0, 14), below)
    assert short is not None and "14 bytes" in short
    assert verify(conf, summary(1, 0, 3), found.by_path["/etc/app.conf"]) is None
    assert verify(conf, summary(1, 0, 2), found.by_path["/etc/app.conf"]) is not None
    (filtered,) = items(HostRule("h", "h", (LATEST,), (), include=("/data/dir",)))
    assert verify(filtered, summary(1, 0, 0), below) is None


def test_small_conversions() -> None:
    """Go file modes become Unix modes; restic's nanosecond times are kept exactly; mounts match by prefix;
    restic's per-file errors are shown once per item."""
    assert go_mode_to_unix(2147484141) == 0o755
    assert go_mode_to_unix((1 << 31) | (1 << 20) | 0o777) == 0o1777
    assert go_mode_to_unix((1 << 23) | 0o755) == 0o4755
    assert parse_time_ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert parse_time_ns("1970-01-01T01:00:01+01:00") == 1_000_000_000
    assert parse_time_ns("nonsense") is None
    assert mount_for("/data/db", ["/data", "/data/db", "/d"]) == "/data/db"
    assert mount_for("/database", ["/data"]) is None
    errors = [
        rj.ItemError("open x: read-only", "restore", "/x"),
        rj.ItemError("lchown x: gone", "restore", "/x"),
    ]
    assert describe_errors(errors, 2, str) == "/x: open x: read-only (and 1 more errors)"


# --- status -------------------------------------------------------------------------------------------


def session(total: int | None = None, *stats: HostRestoreStats) -> RestoreSession:
    obj: dict[str, Any] = {
        "metadata": {"name": "rs", "namespace": "ns", "creationTimestamp": "2026-01-02T03:03:05Z"},
        "spec": {"repository": {"name": "r"}},
    }
    made = RestoreSession.from_dict(obj)
    for entry in stats:
        rs.put_host(made, total or 1, entry, NOW)
    return made


def host(name: str, phase: HostRestorePhase) -> HostRestoreStats:
    return HostRestoreStats(hostname=name, phase=phase)


def test_the_session_runs_until_every_host_is_in() -> None:
    """Running (no duration) until totalHosts final entries exist; then Failed if any failed, Unknown if
    any is unknown, else Succeeded, with the duration since creation."""
    running = session(3, host("host-0", HostRestorePhase.SUCCEEDED), host("host-1", HostRestorePhase.RUNNING))
    assert (rs.phase(running), running.status and running.status.session_duration) == (
        RestorePhase.RUNNING,
        None,
    )
    assert not rs.is_complete(running)
    done = session(2, host("host-0", HostRestorePhase.SUCCEEDED), host("host-1", HostRestorePhase.SUCCEEDED))
    assert done.status is not None
    assert (done.status.phase, done.status.session_duration, done.status.total_hosts) == (
        RestorePhase.SUCCEEDED,
        "1m0s",
        2,
    )
    failed = session(2, host("host-0", HostRestorePhase.FAILED), host("host-1", HostRestorePhase.UNKNOWN))
    assert rs.phase(failed) == RestorePhase.FAILED
    unknown = session(2, host("host-0", HostRestorePhase.SUCCEEDED), host("host-1", HostRestorePhase.UNKNOWN))
    assert rs.phase(unknown) == RestorePhase.UNKNOWN
    assert rs.summary(failed) == "0 of 2 hosts restored, failed: host-0"


def test_a_failed_host_is_retried_and_can_turn_the_session_succeeded() -> None:
    """A Failed host is not 'done' (its restart restores again); its new entry replaces the old one and the
    phase follows; a Succeeded host or session is done."""
    made = session(1, host("host-0", HostRestorePhase.FAILED))
    assert rs.phase(made) == RestorePhase.FAILED
    assert not rs.nothing_to_do(made, "host-0")
    rs.put_host(made, 1, host("host-0", HostRestorePhase.RUNNING), NOW)
    assert rs.phase(made) == RestorePhase.RUNNING
    rs.put_host(made, 1, host("host-0", HostRestorePhase.SUCCEEDED), NOW)
    assert made.status is not None and made.status.stats is not None
    assert (rs.phase(made), len(made.status.stats)) == (RestorePhase.SUCCEEDED, 1)
    assert rs.nothing_to_do(made, "host-0")
    assert rs.nothing_to_do(made, "host-9")  # the whole session Succeeded


def test_conditions_change_their_transition_time_only_with_their_status() -> None:
    """Re-setting a condition with the same status keeps lastTransitionTime; flipping it moves it."""
    made = session()
    later = NOW + dt.timedelta(minutes=1)
    rs.set_condition(made, "MetricsPushed", True, "SuccessfullyPushedMetrics", "ok", NOW)
    rs.set_condition(made, "MetricsPushed", True, "SuccessfullyPushedMetrics", "again", later)
    assert made.status is not None and made.status.conditions is not None
    (condition,) = made.status.conditions
    assert (condition.message, condition.last_transition_time) == ("again", NOW)
    rs.set_condition(made, "MetricsPushed", False, "FailedToPushMetrics", "down", later)
    assert (condition.status, condition.last_transition_time) == ("False", later)
