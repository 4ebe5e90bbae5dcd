"""``snapshots``, ``check``, ``unlock``, ``download`` and ``delete snapshot`` with ``--local`` (the user's
restic): a real API server holding the Repository and its Secret, a real restic repository on the local
backend. No secret value is ever printed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.kubectl_stash.conftest import PASSWORD, LocalRepo, Plugin, local_repository
from tests.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


@pytest.fixture
def repo(kubectl: Any, namespace: str, tmp_path: Path, restic_binary: Path) -> LocalRepo:
    made = local_repository(kubectl, namespace, tmp_path / "backend", restic_binary)
    data = tmp_path / "source" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    made.restic_run(PASSWORD, "backup", "--host=app-0", str(data))
    (data / "a.txt").write_text("alpha, second version\n")
    made.restic_run(PASSWORD, "backup", "--host=app-1", str(data))
    return made


def _ids(repo: LocalRepo) -> list[str]:
    listed = json.loads(repo.restic_run(PASSWORD, "snapshots", "--json", "--no-lock").stdout)
    return [s["short_id"] for s in listed]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_snapshots_lists_id_host_paths_time_and_size(plugin: Plugin, repo: LocalRepo, tmp_path: Path) -> None:
    ran = plugin("snapshots", "repo", "-n", repo.namespace, "--local", f"--restic={repo.restic}")
    assert ran.code == 0, ran.err
    header, *rows = ran.out.splitlines()
    assert header.split() == ["ID", "HOST", "PATHS", "TIME", "AGE", "SIZE"]
    assert [row.split()[0] for row in rows] == _ids(repo)
    assert [row.split()[1] for row in rows] == ["app-0", "app-1"]
    assert all(str(tmp_path / "source" / "data") in row for row in rows)
    assert all(row.split()[-1] == "MiB" and row.split()[-2].startswith("3.0") for row in rows)
    assert PASSWORD not in ran.out + ran.err


def test_check_reads_all_data_and_names_a_damaged_repository(plugin: Plugin, repo: LocalRepo) -> None:
    ok = plugin("check", "repo", "-n", repo.namespace, "--local", "--read-data", f"--restic={repo.restic}")
    assert (ok.code, ok.out) == (0, "repositories.stash.appscode.com/repo: no errors were found\n"), ok.err
    pack = next(
        p for p in (repo.folder / "data").rglob("*") if p.is_file() and p.stat().st_size > 1024 * 1024
    )
    pack.write_bytes(b"\0" * pack.stat().st_size)
    bad = plugin("check", "repo", "-n", repo.namespace, "--local", "--read-data", f"--restic={repo.restic}")
    assert bad.code == 1
    assert bad.err.startswith(f"error: Repository {repo.namespace}/repo contains errors")


def _stale_lock(repo: LocalRepo) -> None:
    """A lock left by a killed restic (its process gone: stale for ``restic unlock``)."""
    env = {"RESTIC_REPOSITORY": str(repo.folder), "RESTIC_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [str(repo.restic), "--no-cache", "backup", "--stdin", "--host=killed"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: any((repo.folder / "locks").iterdir()), what="restic's lock", timeout=60)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()


def test_unlock_removes_stale_locks(plugin: Plugin, repo: LocalRepo) -> None:
    _stale_lock(repo)
    assert len(list((repo.folder / "locks").iterdir())) == 1
    ran = plugin("unlock", "repo", "-n", repo.namespace, "--local", f"--restic={repo.restic}")
    assert (ran.code, ran.out) == (0, "repositories.stash.appscode.com/repo unlocked (stale locks removed)\n")
    assert list((repo.folder / "locks").iterdir()) == []


def test_download_restores_a_snapshot_and_its_paths_with_progress(
    plugin: Plugin, repo: LocalRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _ids(repo)
    into = tmp_path / "downloads"
    ran = plugin(
        "download",
        "repo",
        "-n",
        repo.namespace,
        f"--snapshots={first},{second}",
        f"--destination={into}",
        f"--restic={repo.restic}",
    )
    assert ran.code == 0, ran.err
    assert ran.out == f"downloaded into {into / first}\ndownloaded into {into / second}\n"
    source = tmp_path / "source"
    got = _digest(into / second / str(source).lstrip("/"))
    assert got == _digest(source)
    assert (into / first / str(source).lstrip("/") / "data" / "a.txt").read_text() == "alpha\n"
    progress = capsys.readouterr().err
    # the last report of each snapshot: files and folders restored, and the bytes
    assert re.search(rf"\rsnapshot {first}: 100\.0% \(\d+ files, 3\.000 MiB\)\n", progress)
    assert re.search(rf"\rsnapshot {second}: 100\.0% \(\d+ files, 3\.000 MiB\)\n", progress)
    only = plugin(
        "download",
        "repo",
        "-n",
        repo.namespace,
        f"--snapshots={second}",
        f"--destination={tmp_path / 'one'}",
        f"--paths={source / 'data' / 'a.txt'}",
        f"--restic={repo.restic}",
    )
    assert only.code == 0, only.err
    assert _digest(tmp_path / "one" / second) == {
        f"{str(source).lstrip('/')}/data/a.txt": hashlib.sha256(b"alpha, second version\n").hexdigest()
    }
    missing = plugin("download", "repo", "-n", repo.namespace, f"--restic={repo.restic}")
    assert (
        missing.err
        == "error: --snapshots is required: the snapshot IDs to download (see 'kubectl stash snapshots')\n"
    )


def test_delete_snapshot_forgets_it_by_its_stash_name(plugin: Plugin, repo: LocalRepo) -> None:
    first, second = _ids(repo)
    ran = plugin(
        "delete", "snapshot", f"repo-{first}", "-n", repo.namespace, "--local", f"--restic={repo.restic}"
    )
    assert (ran.code, ran.out) == (0, f"snapshot repo-{first} deleted\n"), ran.err
    assert _ids(repo) == [second]
    bad = plugin("delete", "snapshot", "repo", "-n", repo.namespace, "--local")
    assert bad.code == 1 and "is not <repository>-<snapshot id>" in bad.err


def test_errors_name_the_object_and_field(
    plugin: Plugin, kubectl: Any, namespace: str, repo: LocalRepo
) -> None:
    missing = plugin("snapshots", "nope", "-n", namespace, "--local")
    assert missing.err == f"error: Repository {namespace}/nope not found\n"
    kubectl("delete", "secret", repo.secret, "-n", namespace)
    no_secret = plugin("snapshots", "repo", "-n", namespace, "--local", f"--restic={repo.restic}")
    assert no_secret.err == (
        f"error: Repository {namespace}/repo: storage Secret {namespace}/{repo.secret} "
        "(spec.backend.storageSecretName) not found\n"
    )
    kubectl(
        "create",
        "secret",
        "generic",
        repo.secret,
        "-n",
        namespace,
        "--from-literal=RESTIC_PASSWORD=wrong-one",
    )
    wrong = plugin("snapshots", "repo", "-n", namespace, "--local", f"--restic={repo.restic}")
    assert wrong.code == 1
    assert wrong.err.startswith(f"error: Repository {namespace}/repo: ")
    assert "wrong-one" not in wrong.err and PASSWORD not in wrong.err
