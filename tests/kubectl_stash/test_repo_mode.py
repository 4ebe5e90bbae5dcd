"""``stashlet-agent repo`` as the plugin's Pod runs it (a process here): the request from the environment,
the storage Secret from its mounted folder, results as JSON lines on stdout; failures as one ``error``
line naming the Repository and field, never a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stashlet.agent.repo_command import ENV_REQUEST, MARK, Request

pytestmark = pytest.mark.restic

PASSWORD = "mode-password-314159"


def run_mode(
    tmp_path: Path, restic: Path, request: Request, secret: dict[str, str] | None
) -> tuple[int, list[dict[str, object]], str]:
    secrets_dir = tmp_path / "storage-secrets"
    if secret is not None:
        folder = secrets_dir / "repo-secret"
        folder.mkdir(parents=True, exist_ok=True)
        for key, value in secret.items():
            (folder / key).write_text(value)
    env = {
        "PATH": "/usr/bin:/bin",
        "NAMESPACE": "demo",
        "STASHLET_RESTIC": str(restic),
        "STASHLET_STORAGE_SECRETS_DIR": str(secrets_dir),
        ENV_REQUEST: request.to_json(),
    }
    argv = [
        sys.executable,
        "-m",
        "stashlet.agent.cli",
        "repo",
        "--invoker-kind=Repository",
        "--invoker-name=repo",
        f"--tmp-dir={tmp_path / 'tmp'}",
    ]
    (tmp_path / "tmp").mkdir(exist_ok=True)
    done = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, lines, done.stderr


def test_the_mode_runs_a_request_and_prints_results(tmp_path: Path, restic_binary: Path) -> None:
    backend = {"local": {"mountPath": str(tmp_path), "subPath": "repo"}, "storageSecretName": "repo-secret"}
    env = {"RESTIC_REPOSITORY": str(tmp_path / "repo"), "RESTIC_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    subprocess.run([str(restic_binary), "--no-cache", "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        [str(restic_binary), "--no-cache", "backup", "--host=h", str(restic_binary.parent)],
        env=env,
        check=True,
        capture_output=True,
    )
    code, lines, stderr = run_mode(
        tmp_path, restic_binary, Request("snapshots", "demo/repo", backend), {"RESTIC_PASSWORD": PASSWORD}
    )
    assert code == 0, stderr
    [snapshot] = lines
    assert snapshot[MARK] == "snapshot" and snapshot["hostname"] == "h"
    assert snapshot["paths"] == [str(restic_binary.parent)]
    assert isinstance(snapshot["size"], int) and snapshot["size"] > 1024 * 1024
    wrong = run_mode(
        tmp_path / "w",
        restic_binary,
        Request("read", "demo/repo", backend),
        {"RESTIC_PASSWORD": "not-the-password"},
    )
    assert wrong[0] == 1
    [error] = wrong[1]
    assert error[MARK] == "error" and str(error["message"]).startswith("Repository demo/repo: ")
    assert "not-the-password" not in json.dumps(wrong[1]) + wrong[2]


def test_the_mode_names_what_is_missing(tmp_path: Path, restic_binary: Path) -> None:
    backend = {"rest": {"url": "http://127.0.0.1:9/x"}, "storageSecretName": "repo-secret"}
    code, lines, _ = run_mode(tmp_path, restic_binary, Request("snapshots", "demo/repo", backend), None)
    assert code == 1
    assert lines == [
        {
            MARK: "error",
            "message": "Repository demo/repo: storage Secret 'repo-secret' (spec.backend.storageSecretName) "
            "is not mounted or empty",
        }
    ]
    code, lines, _ = run_mode(
        tmp_path, restic_binary, Request("snapshots", "demo/repo", backend), {"OTHER": "x"}
    )
    assert code == 1
    assert lines == [
        {
            MARK: "error",
            "message": "Repository demo/repo: storage Secret demo/repo-secret has no key RESTIC_PASSWORD",
        }
    ]


def test_an_exclusive_command_waits_for_anothers_lock(tmp_path: Path, restic_binary: Path) -> None:
    """``key remove`` needs an exclusive lock; a backup holding its lock (``backup --stdin``, its input
    still open) makes it wait, not fail as locked, and it ends once the backup has."""
    repo = tmp_path / "repo"
    backend = {"local": {"mountPath": str(tmp_path), "subPath": "repo"}, "storageSecretName": "repo-secret"}
    env = {"RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    restic = [str(restic_binary), "--no-cache"]
    subprocess.run([*restic, "init"], env=env, check=True, capture_output=True)
    (tmp_path / "second").write_text("second-password-2718")
    subprocess.run(
        [*restic, "key", "add", f"--new-password-file={tmp_path / 'second'}"],
        env=env,
        check=True,
        capture_output=True,
    )
    keys = json.loads(
        subprocess.run([*restic, "key", "list", "--json"], env=env, check=True, capture_output=True).stdout
    )
    [other] = [k["id"] for k in keys if not k["current"]]
    backup = subprocess.Popen(
        [*restic, "backup", "--stdin", "--stdin-filename=held"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert backup.stdin is not None
    backup.stdin.write(b"held while the input is open\n")
    backup.stdin.flush()
    try:
        for _ in range(100):
            if any((repo / "locks").iterdir()):
                break
            time.sleep(0.1)
        assert any((repo / "locks").iterdir()), "the backup took no lock"
        closer = threading.Timer(3.0, lambda: backup.stdin.close() if backup.stdin else None)
        closer.start()
        code, lines, stderr = run_mode(
            tmp_path,
            restic_binary,
            Request("key-remove", "demo/repo", backend, {"id": other}),
            {"RESTIC_PASSWORD": PASSWORD},
        )
        closed_first = closer.finished.is_set()  # the backup's input was closed before key remove ended
        closer.join()
    finally:
        if backup.stdin and not backup.stdin.closed:
            backup.stdin.close()
        backup.wait(timeout=60)
    assert backup.returncode == 0
    assert code == 0, stderr
    assert lines == [{MARK: "key-removed", "id": other}]
    assert closed_first  # it waited for the backup's lock to go instead of failing as locked
    keys = json.loads(
        subprocess.run([*restic, "key", "list", "--json"], env=env, check=True, capture_output=True).stdout
    )
    assert [k["id"] for k in keys] != [] and other not in [k["id"] for k in keys]
