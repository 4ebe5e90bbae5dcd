"""The restic error taxonomy: exit code (+ stderr, + JSON exit_error) -> exception."""

from __future__ import annotations

import signal

import pytest

from stashlet.agent.errors import AgentError, RefuseInput, ReportFailure, RetryLater
from stashlet.agent.restic.errors import (
    MAX_MESSAGE_CHARS,
    ExitCode,
    Interrupted,
    PartialBackup,
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
    ResticFailed,
    SnapshotNotFound,
    WrongPassword,
    clean_message,
    error_for_exit,
)
from stashlet.agent.restic.output import BackupSummary, parse_backup_message

LOCKED = (
    "unable to create lock in backend: repository is already locked by PID 19833 on vm by root "
    "(UID 0, GID 0)\n"
    "lock was created at 2026-11-25 12:10:34 (4.06s ago)\nstorage ID 445a606c\n"
    "the `unlock` command can be used to remove stale locks"
)


def test_success_is_no_error() -> None:
    """Exit code 0 maps to no exception, whatever stderr said."""
    assert error_for_exit(0, "warning: something") is None


@pytest.mark.parametrize(
    ("code", "cls", "reason"),
    [
        (10, RepositoryNotFound, "RepositoryNotFound"),
        (11, RepositoryLocked, "RepositoryLocked"),
        (12, WrongPassword, "WrongPassword"),
        (130, Interrupted, "Interrupted"),
        (3, PartialBackup, "PartialBackup"),
        (1, ResticFailed, "ResticFailed"),
        (2, ResticFailed, "ResticFailed"),
    ],
)
def test_documented_exit_codes_map_to_their_class(code: int, cls: type[ResticError], reason: str) -> None:
    """Each documented restic exit code gets its own class, reason and exit_code."""
    error = error_for_exit(code)
    assert type(error) is cls
    assert error.reason == reason
    assert error.exit_code == code
    assert str(error)  # a default message when restic said nothing


def test_unknown_exit_code_is_a_failure() -> None:
    """An exit code restic does not document is treated as a failure and says so."""
    error = error_for_exit(42, "")
    assert type(error) is ResticFailed
    assert "unknown exit code 42" in str(error)


@pytest.mark.parametrize(
    ("code", "stderr", "root"),
    [
        (11, LOCKED, RetryLater),
        (10, "", RefuseInput),
        (12, "", RefuseInput),
        (1, "Fatal: no snapshot found", RefuseInput),
        (1, "", ReportFailure),
        (2, "", ReportFailure),
        (3, "", ReportFailure),
        (130, "", ReportFailure),
        (42, "", ReportFailure),
        (-signal.SIGKILL, "", ReportFailure),
        (-signal.SIGTERM, "", ReportFailure),
    ],
)
def test_each_exit_code_gets_the_root_that_says_what_to_do(
    code: int, stderr: str, root: type[AgentError]
) -> None:
    """Only a locked repository is worth retrying unchanged; a missing repository or snapshot and a
    wrong password are refused (the configuration must change); everything else is a reported failure."""
    error = error_for_exit(code, stderr)
    assert isinstance(error, root)
    others = {RetryLater, RefuseInput, ReportFailure} - {root}
    assert not isinstance(error, tuple(others))


def test_json_exit_error_message_is_preferred_and_cleaned() -> None:
    """The JSON exit_error message wins over stderr, loses its 'Fatal:' prefix and line breaks."""
    message = (
        "Fatal: repository does not exist: unable to open config file: stat /r/config: no such file or "
        "directory\nIs there a repository at the following location?\n/r"
    )
    error = error_for_exit(10, "some other stderr line", message)
    assert str(error) == (
        "repository does not exist: unable to open config file: stat /r/config: no such file or directory; "
        "Is there a repository at the following location?; /r"
    )


def test_locked_message_names_the_holder() -> None:
    """The lock error keeps restic's description of who holds the lock."""
    error = error_for_exit(11, "", LOCKED)
    assert isinstance(error, RepositoryLocked)
    assert "locked by PID 19833 on vm" in str(error)


def test_stderr_tail_is_the_message_without_json() -> None:
    """Without a JSON exit_error, the last lines of stderr (terminal escapes removed) form the message."""
    tail = "line one\n\x1b[2Kline two\r\nFatal: it broke\n"
    assert str(error_for_exit(1, tail)) == "line one; line two; it broke"


def test_exit_1_after_a_signal_is_interrupted() -> None:
    """A SIGINT-stopped backup exits 1 in restic 0.18 ('context canceled'); stderr tells it apart."""
    tail = "\x1b[2Ksignal interrupt received, cleaning up"
    error = error_for_exit(1, tail, "Fatal: unable to save snapshot: context canceled")
    assert isinstance(error, Interrupted)
    assert error.exit_code == 1


def test_missing_snapshot_is_snapshot_not_found() -> None:
    """A restore of a snapshot that does not exist is SnapshotNotFound: a restic error the input caused."""
    for message in (
        'Fatal: failed to find snapshot: no matching ID found for prefix "deadbeef"',
        "Fatal: failed to find snapshot: snapshot filter (Paths:[] Tags:[] Hosts:[x]): no snapshot found",
    ):
        error = error_for_exit(1, "", message)
        assert isinstance(error, SnapshotNotFound)
        assert isinstance(error, ResticError)
        assert isinstance(error, RefuseInput)
        assert error.reason == "SnapshotNotFound"


@pytest.mark.parametrize(
    ("signum", "cls"),
    [(signal.SIGINT, Interrupted), (signal.SIGTERM, Interrupted), (signal.SIGKILL, ResticFailed)],
)
def test_death_by_signal(signum: signal.Signals, cls: type[ResticError]) -> None:
    """A negative exit code (killed by a signal) names the signal; SIGINT/SIGTERM are interruptions."""
    error = error_for_exit(-signum, "")
    assert type(error) is cls
    assert signum.name in str(error)
    assert error.exit_code == -signum


def test_partial_backup_carries_paths_and_summary() -> None:
    """Exit 3 keeps the unreadable paths and the summary, so the partial snapshot can be recorded."""
    summary = parse_backup_message('{"message_type":"summary","files_new":2,"snapshot_id":"ffd12241"}')
    assert isinstance(summary, BackupSummary)
    error = error_for_exit(
        3,
        "",
        "Warning: at least one source file could not be read",
        unreadable=["/proc/self/mem", "/data/x"],
        summary=summary,
    )
    assert isinstance(error, PartialBackup)
    assert error.unreadable == ("/proc/self/mem", "/data/x")
    assert error.snapshot_id == "ffd12241"
    assert "/proc/self/mem" in str(error)
    assert str(error).startswith("Warning: at least one source file could not be read")


def test_partial_backup_lists_at_most_ten_paths_in_its_message() -> None:
    """The message stays readable with many unreadable paths; the attribute keeps them all."""
    paths = [f"/data/f{i}" for i in range(25)]
    error = error_for_exit(3, "", None, unreadable=paths)
    assert isinstance(error, PartialBackup)
    assert len(error.unreadable) == 25
    assert "/data/f9" in str(error)
    assert "/data/f10" not in str(error)
    assert str(error).endswith(", ...)")


def test_long_messages_are_cut() -> None:
    """Messages end up in conditions and events, so they are bounded."""
    error = error_for_exit(1, "", "x" * 5000)
    assert error is not None
    assert len(str(error)) == MAX_MESSAGE_CHARS
    assert str(error).endswith("...")


def test_repr_is_short_and_names_the_reason() -> None:
    """repr() names class, reason and exit code, not the (possibly long) message."""
    error = error_for_exit(12, "", "Fatal: wrong password or no key found")
    assert repr(error) == "WrongPassword(reason='WrongPassword', exit_code=12)"


def test_exit_code_enum_matches_restic_documentation() -> None:
    """The enum holds restic's documented values."""
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 10, 11, 12, 130]


def test_clean_message_handles_blank_and_multiline_text() -> None:
    """Blank lines disappear and carriage returns split lines."""
    assert clean_message("\n\nFatal: a\r\n\nb\n") == "a; b"
    assert clean_message("") == ""


@pytest.mark.parametrize(
    "said",
    [
        "blob.GetProperties: HEAD https://acct.blob.core.windows.net/backups/config\n"
        "RESPONSE 404: 404 The specified container does not exist.\nERROR CODE: ContainerNotFound",
        "Stat: The specified bucket does not exist.",
    ],
)
def test_a_missing_bucket_or_container_is_no_repository(said: str) -> None:
    """restic's last words on a missing S3 bucket or Azure container (the code comes on a later line of
    the Azure SDK's error) make RepositoryNotFound naming the backend, not a generic failure."""
    error = error_for_exit(1, said, location="azure:backups:/demo")
    assert isinstance(error, RepositoryNotFound)
    assert "backend azure:backups:/demo has no such bucket or container" in error.message
