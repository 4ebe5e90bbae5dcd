"""The agent's credentials as the operator hands them to the ``stash`` container: the storage Secret as
files (read for each session, changes followed with watchfiles) and its own ServiceAccount token (the API
client uses it and reads it again)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Any, cast

import certifi
import pytest

from stashlet.agent import settings as agent_settings
from stashlet.agent.context import AgentContext, PreparationError
from stashlet.agent.hosts import identify
from stashlet.agent.live import LiveState
from stashlet.agent.restic.mounted_secret import follow_changes, read_mounted_secret
from stashlet.agent.restic.runner import ResticSettings
from stashlet.api import agent_identity
from stashlet.kube import client as kube_client
from stashlet.kube import config as kube_config


def kubelet_write(directory: Path, data: dict[str, bytes], generation: int) -> None:
    """Write ``data`` as the kubelet's atomic writer does: a hidden timestamped folder, ``..data`` pointing
    at it (swapped in one rename), and each key a link through ``..data``."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = directory / f"..2026_12_05_{generation:04d}"
    payload.mkdir()
    for key, value in data.items():
        (payload / key).write_bytes(value)
    staging = directory / "..data_tmp"
    staging.symlink_to(payload.name)
    staging.rename(directory / "..data")
    for key in data:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(f"..data/{key}")
    for old in directory.glob("..2026_*"):
        if old != payload:
            for file in old.iterdir():
                file.unlink()
            old.rmdir()


def any_ca() -> bytes:
    """A real PEM bundle: the client only loads it, never connects with it here."""
    return Path(certifi.where()).read_bytes()


def test_a_mounted_secret_reads_as_its_keys_and_never_the_kubelets_entries(tmp_path: Path) -> None:
    """Every key of a kubelet-written Secret volume is read with its value; ``..data`` and the timestamped
    folder are the kubelet's and are skipped; nothing mounted is None, an optional volume of a missing
    Secret (an empty folder) is empty."""
    secret = tmp_path / "rest-secret"
    kubelet_write(secret, {"RESTIC_PASSWORD": b"pw1", "REST_SERVER_USERNAME": b"u"}, 1)
    assert read_mounted_secret(secret) == {"REST_SERVER_USERNAME": b"u", "RESTIC_PASSWORD": b"pw1"}
    kubelet_write(secret, {"RESTIC_PASSWORD": b"pw2", "REST_SERVER_USERNAME": b"v"}, 2)
    assert read_mounted_secret(secret) == {"REST_SERVER_USERNAME": b"v", "RESTIC_PASSWORD": b"pw2"}
    assert read_mounted_secret(tmp_path / "absent") is None
    (tmp_path / "empty").mkdir()
    assert read_mounted_secret(tmp_path / "empty") == {}


async def test_a_rotated_secret_is_noticed_and_logged_by_key_names_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The kubelet's swap of a mounted Secret is noticed (its ``..data`` link) and logged with the Secret's
    name and its keys, never a value; a folder that did not change is not logged."""
    root = tmp_path / "storage-secrets"
    kubelet_write(root / "rest-secret", {"RESTIC_PASSWORD": b"first-value"}, 1)
    kubelet_write(root / "other-secret", {"RESTIC_PASSWORD": b"unchanged"}, 1)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="stashlet.agent.restic.mounted_secret")
    follower = asyncio.create_task(follow_changes(root, stop=stop, every=0.1))
    await asyncio.sleep(0.3)  # it has seen the first version
    kubelet_write(root / "rest-secret", {"RESTIC_PASSWORD": b"second-value", "REST_SERVER_PASSWORD": b"x"}, 2)

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "storage Secret changed" in r.getMessage()]

    for _ in range(100):
        if logged():
            break
        await asyncio.sleep(0.1)
    records = logged()
    assert records, "the rotation was not noticed within 10 s"
    stop.set()
    await asyncio.wait_for(follower, timeout=5)
    assert len(records) == 1
    record = cast(Any, records[-1])
    assert record.secret == "rest-secret"
    assert record.keys == ["RESTIC_PASSWORD", "REST_SERVER_PASSWORD"]
    assert "second-value" not in caplog.text
    assert "first-value" not in caplog.text
    assert "unchanged" not in caplog.text


def context(tmp_path: Path, mounted: Path | None) -> AgentContext:
    """An agent context in namespace ``demo`` with storage Secrets mounted under ``mounted``; its API
    client is none at all, so reading through the API would fail loudly."""
    settings = agent_settings.load(
        ["sidecar", "--invoker-name=bc", "--target-kind=Deployment", "--target-name=app"],
        {
            "NAMESPACE": "demo",
            "POD_NAME": "app-1",
            **({agent_identity.ENV_STORAGE_SECRETS_DIR: str(mounted)} if mounted else {}),
        },
    )
    host = identify("Deployment", "app-1", None)
    return AgentContext(
        settings=settings,
        api=cast(Any, None),
        stash=cast(Any, None),
        events=cast(Any, None),
        host=host,
        live=LiveState(invoker={}, target={}, host=host.name, mode="sidecar"),
        restic=ResticSettings(binary="restic", cache_dir=str(tmp_path / "cache")),
    )


async def test_the_storage_secret_of_the_agents_namespace_comes_from_its_files(tmp_path: Path) -> None:
    """With storage Secrets mounted, the Secret of the agent's own namespace is read from its folder (a
    new value is read by the next session); one not mounted, or mounted but missing, is refused naming the
    Secret and the Repository field, never read through the API."""
    root = tmp_path / "storage-secrets"
    kubelet_write(root / "rest-secret", {"RESTIC_PASSWORD": b"pw1"}, 1)
    ctx = context(tmp_path, root)
    assert ctx.settings.storage_secrets_dir == str(root)
    assert await ctx.storage_secret("demo", "rest-secret", "repo") == {"RESTIC_PASSWORD": b"pw1"}
    kubelet_write(root / "rest-secret", {"RESTIC_PASSWORD": b"pw2"}, 2)
    assert await ctx.storage_secret("demo", "rest-secret", "repo") == {"RESTIC_PASSWORD": b"pw2"}

    with pytest.raises(PreparationError) as not_mounted:
        await ctx.storage_secret("demo", "other-secret", "repo")
    assert not_mounted.value.reason == "BackendSecretNotAvailable"
    assert "storage Secret demo/other-secret (Repository demo/repo spec.backend.storageSecretName)" in str(
        not_mounted.value
    )
    assert "is not mounted into this container" in str(not_mounted.value)
    (root / "missing-secret").mkdir()
    with pytest.raises(PreparationError, match=r"storage Secret demo/missing-secret .* not found"):
        await ctx.storage_secret("demo", "missing-secret", "repo")


def test_without_the_variable_the_agent_reads_secrets_through_the_api(tmp_path: Path) -> None:
    """A Job or ``stash-init`` (no variable) has no mounted Secrets: ``storage_secrets_dir`` is None and no
    watch is started."""
    ctx = context(tmp_path, None)
    assert ctx.settings.storage_secrets_dir is None
    assert ctx.secret_watch is None


async def test_the_api_client_talks_with_the_given_token_and_reads_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given ``$STASHLET_KUBE_TOKEN_DIR``, the client reaches ``$KUBERNETES_SERVICE_HOST`` with the CA and
    token found there (not the pod's own account), and a rotated token is used once it is read again."""
    token_dir = tmp_path / "kube-token"
    ca = any_ca()
    kubelet_write(token_dir, {"token": b"token-one", "ca.crt": ca}, 1)
    monkeypatch.setenv(agent_identity.ENV_KUBE_TOKEN_DIR, str(token_dir))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(kube_config, "TOKEN_REREAD_SECONDS", 0.0)
    api = await kube_client.new_api_client()
    try:
        assert (api.origin.scheme, api.origin.authority) == ("https", "10.96.0.1:443")
        assert api.config.ca_file == token_dir / "ca.crt"
        assert isinstance(api.ssl, ssl.SSLContext)
        assert api.ssl.verify_mode == ssl.CERT_REQUIRED
        assert api.headers()["Authorization"] == "Bearer token-one"
        kubelet_write(token_dir, {"token": b"token-two", "ca.crt": ca}, 2)
        assert api.headers()["Authorization"] == "Bearer token-two"
    finally:
        await api.close()


async def test_a_token_that_never_comes_is_an_error_naming_its_folder(tmp_path: Path) -> None:
    """An empty token folder (the Secret not filled yet) is waited for, then refused by name."""
    (tmp_path / "kube-token").mkdir()
    with pytest.raises(
        kube_config.TokenUnavailable, match=r"no ServiceAccount token in .*kube-token after 1 s"
    ):
        await kube_config.wait_for_token(tmp_path / "kube-token", within=1, every=0.2)
    assert not os.listdir(tmp_path / "kube-token")
