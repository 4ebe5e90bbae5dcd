"""``key list``, ``key add``, ``key remove`` and ``key update``: the restic repository's keys (passwords).

``key update`` rotates the password without downtime, in steps that each leave the repository readable:

1. ``added``: the new password becomes a second key (restic ``key add``, opened with the old one);
2. ``secret-updated``: the storage Secret's ``RESTIC_PASSWORD`` becomes the new one (a write conditioned on
   the Secret's resourceVersion), and the annotation :data:`ROTATED_OUT` records the old key's ID;
3. ``read-proven``: a read (``cat config`` and ``snapshots``) with the password the Secret now holds;
4. ``waited``: ``--propagation-wait`` for the kubelets to put the new Secret into every mounted volume
   (sidecars read it for each session; until then they use the old key, still valid);
5. ``session-proven``: a BackupSession of each active configuration using the Repository, waited for
   (:mod:`stashlet.kubectl_stash.session_proof`): what backs up into the repository works with the new
   password (``--prove-session=false`` skips it);
6. ``old-key-removed``: the old key goes (restic ``key remove``, opened with the new one), then the
   annotation.

Interrupted anywhere, the repository opens with the password the Secret holds (and, between 1 and 6, with
both) and the command says which; run again with the same file, it finishes what is left. If the new
password cannot read the repository at step 3, the Secret is set back to the old one.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stashlet.agent.repo_command import MARK
from stashlet.agent.restic.backend import PASSWORD_KEY
from stashlet.api import names
from stashlet.api.repository import Repository
from stashlet.kube.errors import KubeError
from stashlet.kube.rest import MERGE_PATCH, KubeApi
from stashlet.kubectl_stash.errors import PluginError, object_name
from stashlet.kubectl_stash.repositories import read_secret, secret_path, storage_secret_name
from stashlet.kubectl_stash.restic_access import Access, collect, request_for
from stashlet.kubectl_stash.session_proof import DEFAULT_SESSION_TIMEOUT, prove_sessions
from stashlet.kubectl_stash.tables import NONE

KEY_HEADERS = ("ID", "USER", "HOST", "CREATED")
ROTATED_OUT = "kubectl-stash.stashlet.io/rotated-out-key"
"""On the storage Secret while a rotation is half done: the old key's ID, removed at its last step."""
DEFAULT_PROPAGATION_WAIT = 90.0
"""Seconds between the Secret's update and the old key's removal: the kubelet's sync of a mounted Secret
(about a minute) and a margin, so no sidecar is left holding a removed password."""
STEPS = ("added", "secret-updated", "read-proven", "waited", "session-proven", "old-key-removed")

Step = Callable[[str], None]


async def key_rows(access: Access, repo: Repository) -> list[tuple[str, ...]]:
    """One row per key, the current one (the Secret's password) starred, as ``restic key list`` shows."""
    rows: list[tuple[str, ...]] = []
    for key in await collect(access, repo, "key-list"):
        star = "*" if key.get("current") else " "
        rows.append(
            (
                f"{star}{str(key.get('id') or '')[:8]}",
                str(key.get("userName") or NONE),
                str(key.get("hostName") or NONE),
                str(key.get("created") or NONE),
            )
        )
    return rows


async def _current_key(access: Access, repo: Repository) -> str:
    for key in await collect(access, repo, "key-list"):
        if key.get("current"):
            return str(key["id"])
    raise PluginError(f"{_where(repo)}: restic named no current key")


async def add_key(
    access: Access,
    repo: Repository,
    password: bytes,
    *,
    host: str | None = None,
    user: str | None = None,
    reuse_existing: bool = False,
) -> str:
    """Add ``password`` as a key; its ID. With ``reuse_existing`` a password that already opens the
    repository is not added twice (the ID of its key comes back)."""
    if not password:
        raise PluginError("--new-password-file: the file is empty")
    lines: list[dict[str, Any]] = []
    request = request_for(repo, "key-add", host=host, user=user, reuse_existing=reuse_existing)
    await access.perform(repo, request, lines.append, password)
    added = [line for line in lines if line.get(MARK) == "key-added"]
    return str(added[-1].get("id") or "") if added else ""


async def remove_key(access: Access, repo: Repository, key_id: str) -> None:
    """Remove key ``key_id`` (restic refuses the key in use: the Secret's)."""
    if not key_id:
        raise PluginError("--id is required: the key to remove (see 'kubectl stash key list')")
    await collect(access, repo, "key-remove", id=key_id)


def _where(repo: Repository) -> str:
    return object_name(names.KIND_REPOSITORY, repo.metadata.namespace, repo.metadata.name or "")


@dataclass
class Rotation:
    """Where a ``key update`` got to, to say which password opens the repository."""

    repo: Repository
    secret: str
    done: list[str]
    old_key: str | None = None

    def state(self) -> str:
        """Which password opens the repository now, in words."""
        where = f"Secret {self.secret} ({PASSWORD_KEY})"
        if "old-key-removed" in self.done:
            return f"the repository opens with the new password only, which {where} holds"
        if "secret-updated" in self.done:
            return (
                f"the repository opens with both passwords; {where} holds the new one; the old key "
                f"{(self.old_key or '')[:8]} is still there: run the same command again to remove it"
            )
        if "added" in self.done:
            return (
                f"the repository opens with both passwords; {where} still holds the old one, which "
                "keeps working: run the same command again to finish"
            )
        return f"nothing changed: the repository opens with the old password, which {where} holds"


async def _patch_secret(api: KubeApi, namespace: str, name: str, body: dict[str, Any]) -> None:
    await api.send("PATCH", secret_path(namespace, name), body=body, content_type=MERGE_PATCH)


def _encoded(password: bytes) -> str:
    return base64.b64encode(password).decode()


async def update_key(
    api: KubeApi,
    access: Access,
    repo: Repository,
    new_password: bytes,
    *,
    propagation_wait: float,
    prove_session: bool = True,
    session_timeout: float = DEFAULT_SESSION_TIMEOUT,
    on_step: Step | None = None,
    report: Callable[[str], None] | None = None,
) -> Rotation:
    """Rotate the repository's password to ``new_password`` (module docstring); PluginError on failure,
    its message saying which password opens the repository."""
    namespace, secret_name = repo.metadata.namespace or "", storage_secret_name(repo)
    rotation = Rotation(repo, f"{namespace}/{secret_name}", [])
    tell = report or (lambda _: None)

    def step(name: str) -> None:
        rotation.done.append(name)
        tell(f"step {name}: done")
        if on_step is not None:
            on_step(name)

    if not new_password:
        raise PluginError("--new-password-file: the file is empty")
    secret = await read_secret(api, repo)
    data = secret.get("data") or {}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    current = base64.b64decode(data.get(PASSWORD_KEY, ""))
    if current == new_password and not annotations.get(ROTATED_OUT):
        raise PluginError(f"Secret {rotation.secret}: {PASSWORD_KEY} already holds the new password")
    try:
        if current == new_password:
            rotation.done += ["added", "secret-updated"]  # a run interrupted after step 2: finish it
            rotation.old_key = str(annotations[ROTATED_OUT])
        else:
            rotation.old_key = await _current_key(access, repo)
            await add_key(access, repo, new_password, reuse_existing=True)
            step("added")
            patch = {
                "metadata": {
                    "resourceVersion": (secret.get("metadata") or {}).get("resourceVersion"),
                    "annotations": {ROTATED_OUT: rotation.old_key},
                },
                "data": {PASSWORD_KEY: _encoded(new_password)},
            }
            await _patch_secret(api, namespace, secret_name, patch)
            step("secret-updated")
        try:
            await collect(access, repo, "read")
        except PluginError as exc:
            await _patch_secret(
                api,
                namespace,
                secret_name,
                {"metadata": {"annotations": {ROTATED_OUT: None}}, "data": {PASSWORD_KEY: _encoded(current)}},
            )
            rotation.done.remove("secret-updated")
            raise PluginError(
                f"the new password could not read the repository ({exc}); Secret set back"
            ) from exc
        step("read-proven")
        if propagation_wait > 0:
            tell(f"waiting {propagation_wait:g}s for the kubelets to update every mounted copy of the Secret")
            await asyncio.sleep(propagation_wait)
        step("waited")
        if prove_session:
            await prove_sessions(api, repo, within=session_timeout, tell=tell)
        else:
            tell("no session proven (--prove-session=false)")
        step("session-proven")
        await remove_key(access, repo, rotation.old_key or "")
        await _patch_secret(api, namespace, secret_name, {"metadata": {"annotations": {ROTATED_OUT: None}}})
        step("old-key-removed")
    except (PluginError, KubeError, KeyboardInterrupt, asyncio.CancelledError) as exc:
        why = str(exc) or type(exc).__name__
        raise PluginError(f"key update of {_where(repo)} stopped: {why}; {rotation.state()}") from exc
    return rotation
