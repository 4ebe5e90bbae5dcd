"""``key list/add/remove`` and the rotation ``key update`` with ``--local``, against the real API server
and restic: at each step where a rotation can stop, the repository opens with the password the Secret
holds, the command says which, and running it again finishes the rotation. No password is printed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from tests.kubectl_stash.conftest import PASSWORD, LocalRepo, Plugin, Ran, configuration, local_repository

from stashlet.kube.client import api_client
from stashlet.kubectl_stash import keys
from stashlet.kubectl_stash.errors import PluginError
from stashlet.kubectl_stash.repositories import read_repository
from stashlet.kubectl_stash.restic_access import LocalAccess

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

NEW = "new-horse-battery-staple-0512"


@pytest.fixture
def repo(kubectl: Any, namespace: str, tmp_path: Path, restic_binary: Path) -> LocalRepo:
    return local_repository(kubectl, namespace, tmp_path / "backend", restic_binary)


@pytest.fixture
def new_password_file(tmp_path: Path) -> Path:
    path = tmp_path / "new-password"
    path.write_text(NEW + "\n")
    return path


def secret_password(kubectl: Any, repo: LocalRepo) -> str:
    raw = kubectl(
        "get", "secret", repo.secret, "-n", repo.namespace, "-o", "jsonpath={.data.RESTIC_PASSWORD}"
    )
    return base64.b64decode(str(raw.stdout)).decode()


def secret_annotations(kubectl: Any, repo: LocalRepo) -> str:
    got = kubectl(
        "get", "secret", repo.secret, "-n", repo.namespace, "-o", "jsonpath={.metadata.annotations}"
    )
    return str(got.stdout)


def key_update(run: Plugin, repo: LocalRepo, password_file: Path, *flags: str) -> Ran:
    """``kubectl stash key update repo --local`` of ``repo`` to the password in ``password_file``."""
    local = ("-n", repo.namespace, "--local", f"--restic={repo.restic}")
    return run("key", "update", "repo", *local, f"--new-password-file={password_file}", *flags)


def steps(out: str) -> list[str]:
    """The steps ``key update`` reported done (its ``step <name>: done`` lines), in order."""
    return [line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("step ")]


def test_key_list_add_and_remove(plugin: Plugin, repo: LocalRepo, new_password_file: Path) -> None:
    local = ("-n", repo.namespace, "--local", f"--restic={repo.restic}")
    listed = plugin("key", "list", "repo", *local)
    assert listed.code == 0, listed.err
    header, current = listed.out.splitlines()
    assert header.split() == ["ID", "USER", "HOST", "CREATED"]
    assert current.startswith("*")
    added = plugin(
        "key",
        "add",
        "repo",
        *local,
        f"--new-password-file={new_password_file}",
        "--user=ops",
        "--host=laptop",
    )
    assert added.code == 0, added.err
    key_id = added.out.split()[1]
    assert added.out == f"key {key_id} added to repositories.stash.appscode.com/repo\n"
    assert repo.opens_with(NEW) and repo.opens_with(PASSWORD)
    rows = plugin("key", "list", "repo", *local).out.splitlines()[1:]
    assert [r.split()[:3] for r in rows if r.startswith(" ")] == [[key_id, "ops", "laptop"]]
    removed = plugin("key", "remove", "repo", *local, f"--id={key_id}")
    assert (removed.code, removed.out) == (
        0,
        f"key {key_id} removed from repositories.stash.appscode.com/repo\n",
    )
    assert not repo.opens_with(NEW)
    in_use = plugin("key", "remove", "repo", *local, f"--id={current.split()[0].lstrip('*')}")
    assert in_use.code == 1 and in_use.err.startswith(f"error: Repository {repo.namespace}/repo: ")
    assert repo.opens_with(PASSWORD)
    for ran in (listed, added, removed, in_use):
        assert PASSWORD not in ran.out + ran.err and NEW not in ran.out + ran.err


def test_key_update_rotates_without_a_moment_unreadable(
    plugin: Plugin, kubectl: Any, repo: LocalRepo, new_password_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ran = key_update(plugin, repo, new_password_file, "--propagation-wait=0")
    assert ran.code == 0, ran.err
    assert steps(ran.out) == list(keys.STEPS)
    assert "no BackupConfiguration in namespace" in ran.out  # nothing uses the repository: no session
    assert ran.out.endswith("password updated; the Secret and the repository hold only the new one\n")
    assert secret_password(kubectl, repo) == NEW
    assert repo.opens_with(NEW) and not repo.opens_with(PASSWORD)
    assert keys.ROTATED_OUT not in secret_annotations(kubectl, repo)
    everything = ran.out + ran.err + caplog.text
    assert PASSWORD not in everything and NEW not in everything
    again = key_update(plugin, repo, new_password_file)
    assert (
        again.err
        == f"error: Secret {repo.namespace}/{repo.secret}: RESTIC_PASSWORD already holds the new password\n"
    )


EXPECTED = {
    "added": ("opens with both passwords", "still holds the old one", PASSWORD),
    "secret-updated": ("opens with both passwords", "holds the new one", NEW),
    "read-proven": ("opens with both passwords", "holds the new one", NEW),
    "waited": ("opens with both passwords", "holds the new one", NEW),
    "session-proven": ("opens with both passwords", "holds the new one", NEW),
}


@pytest.mark.parametrize("stop_after", list(EXPECTED))
def test_key_update_interrupted_says_which_password_opens_and_finishes_when_run_again(
    stop_after: str,
    plugin: Plugin,
    kubectl: Any,
    repo: LocalRepo,
    new_password_file: Path,
    control_plane: Any,
) -> None:
    def interrupt(step: str) -> None:
        if step == stop_after:
            raise KeyboardInterrupt

    async def rotate() -> None:
        async with api_client(str(control_plane.kubeconfig)) as api:
            model = await read_repository(api, repo.namespace, "repo")
            access = LocalAccess(api, str(repo.restic))
            await keys.update_key(api, access, model, NEW.encode(), propagation_wait=0, on_step=interrupt)

    with pytest.raises(PluginError) as stopped:
        asyncio.run(rotate())
    both, holds, in_secret = EXPECTED[stop_after]
    message = str(stopped.value)
    assert message.startswith(f"key update of Repository {repo.namespace}/repo stopped: KeyboardInterrupt; ")
    assert both in message and holds in message and f"Secret {repo.namespace}/{repo.secret}" in message
    assert secret_password(kubectl, repo) == in_secret
    assert repo.opens_with(PASSWORD) and repo.opens_with(NEW)
    finished = key_update(plugin, repo, new_password_file, "--propagation-wait=0")
    assert finished.code == 0, finished.err
    assert secret_password(kubectl, repo) == NEW
    assert repo.opens_with(NEW) and not repo.opens_with(PASSWORD)
    assert len(json.loads(repo.restic_run(NEW, "key", "list", "--json").stdout)) == 1


def test_key_update_refused_a_secret_write_keeps_the_old_password_working(
    plugin_as: Any, kubectl: Any, repo: LocalRepo, new_password_file: Path
) -> None:
    kubectl(
        "create",
        "role",
        "reader",
        "-n",
        repo.namespace,
        "--verb=get",
        "--resource=secrets,repositories.stash.appscode.com",
    )
    kubectl(
        "create",
        "rolebinding",
        "reader",
        "-n",
        repo.namespace,
        "--role=reader",
        f"--serviceaccount={repo.namespace}:reader",
    )
    reader = plugin_as(repo.namespace, "reader")
    ran = key_update(reader, repo, new_password_file, "--propagation-wait=0")
    assert ran.code == 1
    assert "forbidden" in ran.err
    assert ran.err.rstrip().endswith(
        f"the repository opens with both passwords; Secret {repo.namespace}/{repo.secret} (RESTIC_PASSWORD) "
        "still holds the old one, which keeps working: run the same command again to finish"
    )
    assert secret_password(kubectl, repo) == PASSWORD
    assert repo.opens_with(PASSWORD)


def test_a_proving_session_that_does_not_end_stops_the_rotation_with_both_keys(
    plugin: Plugin, kubectl: Any, repo: LocalRepo, new_password_file: Path
) -> None:
    """A configuration uses the repository, and no agent runs its session here (no workload): the session
    never ends, so the old key is not removed and the command says both passwords open the repository."""
    kubectl("apply", "-f", "-", input_obj=configuration("uses-repo", repo.namespace))
    paused = configuration("paused", repo.namespace, paused=True)
    kubectl("apply", "-f", "-", input_obj=paused)
    ran = key_update(plugin, repo, new_password_file, "--propagation-wait=0", "--session-timeout=3")
    assert ran.code == 1
    assert steps(ran.out) == ["added", "secret-updated", "read-proven", "waited"]
    assert f"BackupConfiguration {repo.namespace}/paused is paused: no session with it" in ran.out
    assert f"BackupSession {repo.namespace}/uses-repo-" in ran.err and "did not end within 3s" in ran.err
    assert "opens with both passwords" in ran.err and "run the same command again" in ran.err
    assert secret_password(kubectl, repo) == NEW
    assert repo.opens_with(PASSWORD) and repo.opens_with(NEW)
    sessions = json.loads(kubectl("get", "backupsessions", "-n", repo.namespace, "-o", "json").stdout)[
        "items"
    ]
    assert [s["spec"]["invoker"]["name"] for s in sessions] == ["uses-repo"]
    skipped = key_update(plugin, repo, new_password_file, "--propagation-wait=0", "--prove-session=false")
    assert skipped.code == 0, skipped.err
    assert "no session proven (--prove-session=false)" in skipped.out
    assert repo.opens_with(NEW) and not repo.opens_with(PASSWORD)
