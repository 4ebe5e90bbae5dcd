"""Where the agent's client finds the API server and who it is there: kubeconfigs (token, token file,
client certificate as files or data, CA as file or data, insecure), a token directory, in-cluster
variables; what it refuses (exec and auth-provider plugins, missing entries) names the file and the entry.

The cluster tests talk to the real API server with each kind of kubeconfig the local control plane's
admin credentials (client certificates) and a ServiceAccount token allow, and ask it who they are."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from tests.kubeconfigs import token_kubeconfig

from stashlet.api import agent_identity
from stashlet.kube import config as kube_config
from stashlet.kube.client import new_api_client
from stashlet.kube.config import ClusterConfig, KubeconfigError, kubeconfig_config, load_config
from stashlet.kube.rest import RestClient
from stashlet.localcluster.controlplane import ControlPlane


def write(path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://example:6443"}}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(json.dumps(doc))
    return path


def admin_user(plane: ControlPlane) -> tuple[dict[str, Any], dict[str, Any]]:
    """The admin kubeconfig's cluster and user entries."""
    doc = json.loads(plane.kubeconfig.read_text())
    return doc["clusters"][0]["cluster"], doc["users"][0]["user"]


# ---------------------------------------------------------------- refusals and reading, no server


@pytest.mark.parametrize(
    ("user", "named"),
    [
        ({"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}}, "exec"),
        ({"auth-provider": {"name": "oidc"}}, "auth-provider"),
        ({"username": "a", "password": "b"}, "password, username"),
    ],
)
def test_plugins_and_basic_auth_are_refused_naming_the_file_and_user(
    tmp_path: Path, user: dict[str, Any], named: str
) -> None:
    path = write(tmp_path / "kubeconfig", user)
    with pytest.raises(KubeconfigError, match=rf"kubeconfig {path} \(user 'u'\): {named} is not supported"):
        kubeconfig_config([path])


def test_missing_entries_are_named(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({"current-context": "nowhere", "contexts": []}))
    with pytest.raises(KubeconfigError, match=rf"kubeconfig {path}: no context named 'nowhere'"):
        kubeconfig_config([path])
    path.write_text(json.dumps({"contexts": []}))
    with pytest.raises(KubeconfigError, match="no current-context"):
        kubeconfig_config([path])
    with pytest.raises(KubeconfigError, match="not found"):
        kubeconfig_config([tmp_path / "absent"])
    write(path, {"token": "t"}, {"certificate-authority": "ca.crt"})
    with pytest.raises(KubeconfigError, match=r"\(cluster 'c'\): no server"):
        kubeconfig_config([path])
    write(path, {"client-certificate": "tls.crt"})
    with pytest.raises(KubeconfigError, match="client-certificate and client-key go together"):
        kubeconfig_config([path])


def test_relative_paths_are_the_kubeconfigs_own_and_yaml_is_read(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n"
        "contexts: [{name: ctx, context: {cluster: c, user: u}}]\n"
        "clusters: [{name: c, cluster: {server: 'https://h:6443', certificate-authority: pki/ca.crt}}]\n"
        "users: [{name: u, user: {tokenFile: token, client-certificate: /abs/tls.crt, client-key: k}}]\n"
    )
    found = kubeconfig_config([path])
    assert (found.server, found.ca_file, found.token_file) == (
        "https://h:6443",
        tmp_path / "conf" / "pki" / "ca.crt",
        tmp_path / "conf" / "token",
    )
    assert (found.cert_file, found.key_file) == (Path("/abs/tls.crt"), tmp_path / "conf" / "k")
    assert found.source == f"kubeconfig {path} (user 'u')"


def test_kubeconfig_list_merges_as_kubectl_does(tmp_path: Path) -> None:
    """``$KUBECONFIG`` is a list: the first file naming the current context or an entry wins."""
    first = write(tmp_path / "first", {"token": "first"}, {"server": "https://first:6443"})
    second = tmp_path / "second"
    second.write_text(
        json.dumps(
            {
                "current-context": "other",
                "contexts": [{"name": "other", "context": {"cluster": "c2", "user": "u"}}],
                "clusters": [{"name": "c2", "cluster": {"server": "https://second:6443"}}],
                "users": [{"name": "u", "user": {"token": "second"}}],
            }
        )
    )
    paths = kube_config.kubeconfig_paths({"KUBECONFIG": f"{first}:{tmp_path / 'absent'}:{second}"})
    assert paths == [first, tmp_path / "absent", second]
    found = kubeconfig_config(paths)
    assert (found.server, found.bearer_token()) == ("https://first:6443", "first")
    swapped = kubeconfig_config([second, first])
    assert (swapped.server, swapped.bearer_token()) == ("https://second:6443", "second")


def test_a_token_file_is_read_again_after_a_minute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("one\n")
    found = ClusterConfig(server="https://h", source="test", token_file=tmp_path / "token")
    assert found.bearer_token() == "one"
    (tmp_path / "token").write_text("two\n")
    assert found.bearer_token() == "one"  # within the minute: the read kept
    monkeypatch.setattr(kube_config, "TOKEN_REREAD_SECONDS", 0.0)
    assert found.bearer_token() == "two"


def test_in_cluster_server() -> None:
    """An IPv6 service host is bracketed; no service variables is an error saying so."""
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert kube_config.in_cluster_server(env) == "https://[fd00::1]:443"
    with pytest.raises(KubeconfigError, match="KUBERNETES_SERVICE_HOST"):
        kube_config.in_cluster_server({})


async def test_load_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubeconfig given > token directory > in-cluster > $KUBECONFIG."""
    given = write(tmp_path / "given", {"token": "given"}, {"server": "https://given:6443"})
    env_file = write(tmp_path / "env", {"token": "env"}, {"server": "https://env:6443"})
    token_dir = tmp_path / "kube-token"
    token_dir.mkdir()
    (token_dir / "token").write_text("dir")
    (token_dir / "ca.crt").write_text("not read here")
    monkeypatch.setenv("KUBECONFIG", str(env_file))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv(agent_identity.ENV_KUBE_TOKEN_DIR, raising=False)
    assert (await load_config()).server == "https://env:6443"  # no pod account mounted here
    monkeypatch.setenv(agent_identity.ENV_KUBE_TOKEN_DIR, str(token_dir))
    from_dir = await load_config()
    assert (from_dir.server, from_dir.bearer_token(), from_dir.ca_file) == (
        "https://10.96.0.1:443",
        "dir",
        token_dir / "ca.crt",
    )
    assert (await load_config(str(given))).bearer_token() == "given"


def test_an_unusable_ca_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path / "kubeconfig", {"token": "t"}, {"server": "https://h", "certificate-authority": "no"}
    )
    found = kubeconfig_config([path])
    with pytest.raises(KubeconfigError, match=rf"kubeconfig {path} \(user 'u'\): CA or client certificate"):
        found.ssl_context()


def test_only_the_clusters_ca_is_trusted(tmp_path: Path) -> None:
    """The cluster's CA alone is loaded, never the system bundle (memory, and trust)."""
    ca = tmp_path / "ca.crt"
    ca.write_text(CA_PEM)
    context = ClusterConfig(server="https://h", source="test", ca_file=ca).ssl_context()
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    insecure = ClusterConfig(server="https://h", source="test", insecure=True).ssl_context()
    assert insecure.verify_mode == ssl.CERT_NONE
    assert insecure.cert_store_stats()["x509_ca"] == 0


# ---------------------------------------------------------------- against the real API server


async def who_am_i(api: RestClient) -> str:
    review = await api.send(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


@pytest.mark.cluster
async def test_client_certificates_as_files_and_as_data(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The admin kubeconfig (certificate files) and the same credentials inlined as data reach the real
    server as the admin."""
    cluster, user = admin_user(control_plane)
    async with await new_api_client(str(control_plane.kubeconfig)) as api:
        admin = await who_am_i(api)
    assert admin
    inlined = write(
        tmp_path / "inline",
        {
            "client-certificate-data": b64(user["client-certificate"]),
            "client-key-data": b64(user["client-key"]),
        },
        {"server": cluster["server"], "certificate-authority-data": b64(cluster["certificate-authority"])},
    )
    async with await new_api_client(str(inlined)) as api:
        assert await who_am_i(api) == admin


@pytest.mark.cluster
async def test_token_and_token_file_reach_the_server_as_the_account(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = control_plane.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    account = f"system:serviceaccount:{namespace}:reader"
    async with await new_api_client(str(token_kubeconfig(control_plane, token, tmp_path / "t"))) as api:
        assert await who_am_i(api) == account
    cluster, _ = admin_user(control_plane)
    (tmp_path / "token").write_text(token)
    by_file = write(tmp_path / "f", {"tokenFile": "token"}, cluster)
    async with await new_api_client(str(by_file)) as api:
        assert await who_am_i(api) == account


@pytest.mark.cluster
async def test_tls_is_verified_against_the_clusters_ca_unless_told_not_to(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cluster, user = admin_user(control_plane)
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_text(CA_PEM)
    wrong = write(
        tmp_path / "wrong", user, {"server": cluster["server"], "certificate-authority": str(other_ca)}
    )
    async with await new_api_client(str(wrong)) as api:
        with pytest.raises(ssl.SSLCertVerificationError):
            await who_am_i(api)
    insecure = write(
        tmp_path / "insecure", user, {"server": cluster["server"], "insecure-skip-tls-verify": True}
    )
    async with await new_api_client(str(insecure)) as api:
        assert await who_am_i(api)


CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBPTCB5KADAgECAgEBMAoGCCqGSM49BAMCMB0xGzAZBgNVBAMMEm5vdC10aGUt
Y2x1c3Rlci1jYTAgFw0yNDAxMDEwMDAwMDBaGA8yMTIzMTIwODAwMDAwMFowHTEb
MBkGA1UEAwwSbm90LXRoZS1jbHVzdGVyLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEfnta0aK05zfFg6asXfyI5C/JVjAHM9/vq8lCm9Qg7LMncQ2dAee41Dxn
EjBeB9IeeK7uEER9ogVMb8zCSIi7o6MTMBEwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNIADBFAiEA2z0UW9nlclXkBnqNRw1KDaIisEn96FBBSV43XhwEtB8C
IAftAnbLh4cauvYl5DaqUOPlN2EmSLtQviJZqXclNjgr
-----END CERTIFICATE-----
"""
"""A CA that signed nothing of the cluster's (a self-signed certificate made for these tests)."""
