"""``kubectl get snapshots`` through the real aggregation layer, served by the snapshots API server from
repositories the real restic wrote on the real REST server (see conftest)."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.snapshots_api.conftest import (
    REST_PASSWORD,
    RESTIC_PASSWORD,
    RestServer,
    SnapshotsServer,
    kubectl_as,
    rest_repository,
)

from stashlet.localcluster.controlplane import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


def _data(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "file.txt").write_text(f"{name}\n")
    return folder


def _rows(output: str) -> list[list[str]]:
    lines = output.strip().splitlines()
    return [line.split() for line in lines[1:]]


def test_kubectl_lists_and_gets_snapshots_as_stash_shows_them(
    snapshots_server: SnapshotsServer,
    rest_server: RestServer,
    kubectl: Any,
    namespace: str,
    restic_binary: Path,
    tmp_path: Path,
) -> None:
    """``-l repository=R`` lists R's snapshots (not another Repository's) with Stash's columns; ``-l
    hostname=`` narrows to a host; a snapshot by name as YAML is restic's snapshot as Stash writes it."""
    repo = rest_repository(kubectl, namespace, "rest-repo", rest_server.url(f"{namespace}-a"), restic_binary)
    other = rest_repository(
        kubectl, namespace, "other-repo", rest_server.url(f"{namespace}-b"), restic_binary
    )
    for each in (repo, other):
        each.restic_run("init")
    first = repo.backup(_data(tmp_path, "one"), "host-0")
    second = repo.backup(_data(tmp_path, "two"), "db")
    elsewhere = other.backup(_data(tmp_path, "three"), "host-0")

    began = time.monotonic()
    listed = kubectl("get", "snapshots", "-n", namespace, "-l", "repository=rest-repo")
    print(f"kubectl get snapshots -l repository=rest-repo: {time.monotonic() - began:.2f}s")
    header = listed.stdout.splitlines()[0].split()
    assert header == ["NAME", "ID", "REPOSITORY", "HOSTNAME", "CREATED", "AT"]
    rows = _rows(listed.stdout)
    assert sorted((r[0], r[1], r[2], r[3]) for r in rows) == sorted(
        [
            (f"rest-repo-{first['short_id']}", first["short_id"], "rest-repo", "host-0"),
            (f"rest-repo-{second['short_id']}", second["short_id"], "rest-repo", "db"),
        ]
    )
    assert all(not r[0].startswith("other-repo") for r in rows)
    taken = datetime.fromisoformat(re.sub(r"\.\d+", "", first["time"])).astimezone(UTC)
    created = {r[0]: r[4] for r in rows}
    assert created[f"rest-repo-{first['short_id']}"] == taken.strftime("%Y-%m-%dT%H:%M:%SZ")

    by_host = _rows(
        kubectl("get", "snapshots", "-n", namespace, "-l", "repository=rest-repo,hostname=db").stdout
    )
    assert [r[0] for r in by_host] == [f"rest-repo-{second['short_id']}"]
    both = _rows(
        kubectl("get", "snapshots", "-n", namespace, "-l", "repository in (rest-repo,other-repo)").stdout
    )
    assert len(both) == 3
    assert f"other-repo-{elsewhere['short_id']}" in [r[0] for r in both]

    name = f"rest-repo-{first['short_id']}"
    got = yaml.safe_load(kubectl("get", "snapshot", name, "-n", namespace, "-o", "yaml").stdout)
    assert got["apiVersion"] == "repositories.stash.appscode.com/v1alpha1"
    assert got["kind"] == "Snapshot"
    assert got["metadata"]["name"] == name
    assert got["metadata"]["namespace"] == namespace
    assert got["metadata"]["uid"] == first["id"]
    assert got["metadata"]["labels"] == {"repository": "rest-repo", "hostname": "host-0"}
    assert got["metadata"]["creationTimestamp"] == taken.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["status"] == {
        "tree": first["tree"],
        "paths": first["paths"],
        "hostname": "host-0",
        "username": first.get("username", ""),
        "uid": first.get("uid", 0),
        "gid": first.get("gid", 0),
        "repository": "rest-repo",
    }

    as_list = json.loads(kubectl("get", "snapshots", "-n", namespace, "-o", "json").stdout)
    assert {item["metadata"]["uid"] for item in as_list["items"]} == {
        first["id"],
        second["id"],
        elsewhere["id"],
    }

    everywhere = kubectl("get", "snapshots", "-A", "-l", "repository=rest-repo").stdout
    assert f"rest-repo-{first['short_id']}" in everywhere

    missing = kubectl("get", "snapshot", "rest-repo-00000000", "-n", namespace, check=False)
    assert missing.returncode != 0
    assert 'snapshots.repositories.stash.appscode.com "rest-repo-00000000" not found' in missing.stderr
    badly_named = kubectl("get", "snapshot", "rest-repo", "-n", namespace, check=False)
    assert "is not <repository>-<first 8 characters of the snapshot ID>" in badly_named.stderr


def test_rbac_decides_who_reads_snapshots(
    snapshots_server: SnapshotsServer,
    rest_server: RestServer,
    control_plane: ControlPlane,
    kubectl: Any,
    namespace: str,
    restic_binary: Path,
    tmp_path: Path,
    as_account: Any,
) -> None:
    """A user without the right is Forbidden, in the API server's words; granted ``list`` to a group it
    is in (the front proxy's X-Remote-Group headers reach the SubjectAccessReview), it lists, and still
    may not ``get`` one by name."""
    repo = rest_repository(
        kubectl, namespace, "rest-repo", rest_server.url(f"{namespace}-rbac"), restic_binary
    )
    repo.restic_run("init")
    snapshot = repo.backup(_data(tmp_path, "data"), "host-0")
    nobody = as_account(namespace, "nobody")
    refused = kubectl_as(control_plane, nobody, "get", "snapshots", "-n", namespace)
    assert refused.returncode != 0
    assert (
        "Error from server (Forbidden): snapshots.repositories.stash.appscode.com is forbidden: "
        f'User "system:serviceaccount:{namespace}:nobody" cannot list resource "snapshots" in API group '
        f'"repositories.stash.appscode.com" in the namespace "{namespace}"'
    ) in refused.stderr

    kubectl(
        "create",
        "role",
        "snapshot-lister",
        "-n",
        namespace,
        "--verb=list",
        "--resource=snapshots.repositories.stash.appscode.com",
    )
    kubectl(
        "create",
        "rolebinding",
        "snapshot-lister",
        "-n",
        namespace,
        "--role=snapshot-lister",
        f"--group=system:serviceaccounts:{namespace}",
    )
    listed = kubectl_as(control_plane, nobody, "get", "snapshots", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    assert f"rest-repo-{snapshot['short_id']}" in listed.stdout
    one = kubectl_as(
        control_plane, nobody, "get", "snapshot", f"rest-repo-{snapshot['short_id']}", "-n", namespace
    )
    assert "Error from server (Forbidden)" in one.stderr
    assert "cannot get resource" in one.stderr


def test_a_broken_repository_is_named_and_no_secret_is_shown(
    snapshots_server: SnapshotsServer,
    rest_server: RestServer,
    kubectl: Any,
    namespace: str,
    restic_binary: Path,
    tmp_path: Path,
) -> None:
    """A missing Secret, a wrong password and a backend that refuses connections each answer an error
    naming the Repository (and field or backend); a local Repository is left out of a list with a
    warning; no answer holds a password."""
    rest_repository(
        kubectl,
        namespace,
        "no-secret",
        rest_server.url(f"{namespace}-x"),
        restic_binary,
        secret="nope",
        create_secret=False,
    )
    missing = kubectl("get", "snapshots", "-n", namespace, "-l", "repository=no-secret", check=False)
    assert missing.returncode != 0
    assert (
        f"Error from server (InternalError): Repository {namespace}/no-secret: "
        f'spec.backend.storageSecretName: Secret "{namespace}/nope" not found'
    ) in missing.stderr

    good = rest_repository(kubectl, namespace, "good", rest_server.url(f"{namespace}-good"), restic_binary)
    good.restic_run("init")
    rest_repository(
        kubectl, namespace, "wrong-password", good.url, restic_binary, password="not-the-password-at-all"
    )
    wrong = kubectl("get", "snapshots", "-n", namespace, "-l", "repository=wrong-password", check=False)
    assert wrong.returncode != 0
    assert f"Error from server (InternalError): Repository {namespace}/wrong-password:" in wrong.stderr
    assert "password" in wrong.stderr

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed_port = spare.getsockname()[1]
    rest_repository(kubectl, namespace, "unreachable", f"http://127.0.0.1:{closed_port}/repo", restic_binary)
    unreachable = kubectl("get", "snapshots", "-n", namespace, "-l", "repository=unreachable", check=False)
    assert unreachable.returncode != 0
    assert (
        f"Error from server (ServiceUnavailable): Repository {namespace}/unreachable: backend "
        f"rest:http://127.0.0.1:{closed_port}/repo unreachable"
    ) in unreachable.stderr
    assert "connection refused" in unreachable.stderr

    local = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "local-repo", "namespace": namespace},
        "spec": {
            "backend": {
                "local": {"mountPath": "/backup", "hostPath": {"path": "/tmp/x"}},
                "storageSecretName": "good-secret",
            }
        },
    }
    kubectl("apply", "-f", "-", input_obj=local)
    listed = kubectl(
        "get", "snapshots", "-n", namespace, "-l", "repository in (good,local-repo)", check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert f"Warning: Repository {namespace}/local-repo: spec.backend.local" in listed.stderr
    assert "kubectl stash snapshots local-repo" in listed.stderr

    for said in (missing, wrong, unreachable, listed):
        for secret in (RESTIC_PASSWORD, REST_PASSWORD, "not-the-password-at-all"):
            assert secret not in said.stdout + said.stderr
    log = snapshots_server.process.log.read_text()
    for secret in (RESTIC_PASSWORD, REST_PASSWORD, "not-the-password-at-all"):
        assert secret not in log


def _raw_get(
    server: SnapshotsServer, path: str, context: ssl.SSLContext, headers: str = ""
) -> tuple[int, Any]:
    with (
        socket.create_connection((server.address, server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server.address) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    if not answer:
        return 0, "no answer: the connection was closed"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body.startswith(b"{") else body.decode()


def test_only_the_front_proxy_is_trusted(
    snapshots_server: SnapshotsServer, control_plane: ControlPlane
) -> None:
    """Straight to the server: without a client certificate, or with the cluster admin's (not the front
    proxy's CA), X-Remote-User headers count for nothing: 401 Status. Probes answer anyone."""
    path = "/apis/repositories.stash.appscode.com/v1alpha1/namespaces/default/snapshots"
    anonymous = ssl.create_default_context()
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    status, body = _raw_get(
        snapshots_server,
        path,
        anonymous,
        "X-Remote-User: stashlet-admin\r\nX-Remote-Group: system:masters\r\n",
    )
    assert status == 401
    assert body["kind"] == "Status"
    assert body["reason"] == "Unauthorized"
    assert _raw_get(snapshots_server, "/healthz", anonymous) == (200, "ok")

    admin = ssl.create_default_context()
    admin.check_hostname = False
    admin.verify_mode = ssl.CERT_NONE
    admin.load_cert_chain(
        str(control_plane.pki.client_cert("stashlet-admin")),
        str(control_plane.pki.client_key("stashlet-admin")),
    )
    try:
        refused = _raw_get(snapshots_server, path, admin, "X-Remote-User: stashlet-admin\r\n")
    except (ssl.SSLError, ConnectionError) as exc:
        refused = (0, str(exc))
    assert refused[0] == 0, refused

    proxy = ssl.create_default_context()
    proxy.check_hostname = False
    proxy.verify_mode = ssl.CERT_NONE
    proxy.load_cert_chain(
        str(control_plane.pki.front_proxy_client_cert), str(control_plane.pki.front_proxy_client_key)
    )
    status, body = _raw_get(snapshots_server, "/apis/repositories.stash.appscode.com/v1alpha1", proxy)
    assert status == 200
    assert body["resources"][0]["name"] == "snapshots"
    status, body = _raw_get(snapshots_server, path, proxy)
    assert (status, body["reason"]) == (401, "Unauthorized")
