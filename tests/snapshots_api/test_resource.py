"""The Snapshot API's pure parts: names, label selectors, routes, Tables, front-proxy headers, refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stashlet.agent.restic import output as rj
from stashlet.agent.snapshots_api import resource
from stashlet.agent.snapshots_api.authorization import Attributes, review
from stashlet.agent.snapshots_api.frontproxy import (
    FrontProxyUnconfigured,
    RequestHeaderConfig,
    Unauthenticated,
    User,
    authenticate,
)
from stashlet.agent.snapshots_api.selectors import SelectorError, parse
from stashlet.agent.snapshots_api.server import Route, route

SNAPSHOT = rj.Snapshot(
    id="b54ee4a0e9c9084696dc976f125c4fd0e6b1a31abfd82cfc857b3bc9e559fa2f",
    short_id="b54ee4a0",
    time=datetime(2020, 7, 25, 17, 41, 31, 123456, tzinfo=UTC),
    hostname="app",
    paths=("/var/lib/html",),
    tags=(),
    tree="11527d99281bf3725d58cd637d1f3c19ab9d397d6cff1887a1cd1f9c8c5ebb80",
    parent=None,
    username="",
    uid=0,
    gid=0,
    excludes=(),
    program_version="restic 0.18.1",
    summary=None,
)


def test_a_snapshot_is_the_object_of_stashs_documentation() -> None:
    """docs/concepts/crds/snapshot: name <repository>-<8>, uid the full ID, labels, status fields."""
    assert resource.snapshot_object("demo", "minio-repo", {}, SNAPSHOT) == {
        "apiVersion": "repositories.stash.appscode.com/v1alpha1",
        "kind": "Snapshot",
        "metadata": {
            "name": "minio-repo-b54ee4a0",
            "namespace": "demo",
            "uid": SNAPSHOT.id,
            "labels": {"repository": "minio-repo", "hostname": "app"},
            "creationTimestamp": "2020-07-25T17:41:31Z",
        },
        "status": {
            "tree": SNAPSHOT.tree,
            "paths": ["/var/lib/html"],
            "hostname": "app",
            "username": "",
            "uid": 0,
            "gid": 0,
            "repository": "minio-repo",
        },
    }
    labelled = resource.snapshot_object("demo", "r", {"team": "a", "hostname": "x"}, SNAPSHOT)
    assert labelled["metadata"]["labels"] == {"repository": "r", "hostname": "x", "team": "a"}


def test_names_split_as_stash_splits_them() -> None:
    assert resource.split_name("my-repo-b54ee4a0") == ("my-repo", "b54ee4a0")
    for bad in ("b54ee4a0", "repo-b54ee4a", "repo-B54EE4A0", "repo-", "repo"):
        with pytest.raises(resource.BadSnapshotName, match="is not <repository>-<first 8 characters"):
            resource.split_name(bad)


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("repository=a", {"repository": "a"}, True),
        ("repository==a", {"repository": "b"}, False),
        ("repository!=a", {}, True),
        ("repository in (a, b),hostname=db", {"repository": "b", "hostname": "db"}, True),
        ("repository notin (a,b)", {"repository": "b"}, False),
        ("hostname", {"hostname": ""}, True),
        ("!hostname", {"hostname": "x"}, False),
        ("", {"x": "y"}, True),
    ],
)
def test_label_selectors_match_as_the_api_server_does(
    text: str, labels: dict[str, str], matches: bool
) -> None:
    assert parse(text).matches(labels) is matches


@pytest.mark.parametrize("text", ["repository=a,", "repository in (a", "=a", "repository=a b", "x=y!"])
def test_a_selector_that_does_not_parse_is_refused_with_the_requirement(text: str) -> None:
    with pytest.raises(SelectorError, match="unable to parse requirement"):
        parse(text)


def test_routes() -> None:
    base = "/apis/repositories.stash.appscode.com/v1alpha1"
    assert route(f"{base}/snapshots") == Route("list", None)
    assert route(f"{base}/namespaces/demo/snapshots") == Route("list", "demo")
    assert route(f"{base}/namespaces/demo/snapshots/r-b54ee4a0") == Route("get", "demo", "r-b54ee4a0")
    assert route(f"{base}/namespaces/demo/other") is None
    assert route(f"{base}/namespaces/demo/snapshots/r/status") is None
    assert route("/apis/other/v1/snapshots") is None


def test_kubectl_gets_a_table_with_stashs_columns() -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"
    assert resource.wants_table(accept) == "v1"
    assert resource.wants_table("application/json") is None
    item = resource.snapshot_object("demo", "r", {}, SNAPSHOT)
    table = resource.table([item])
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "ID",
        "Repository",
        "Hostname",
        "Created At",
    ]
    assert table["rows"][0]["cells"] == ["r-b54ee4a0", "b54ee4a0", "r", "app", "2020-07-25T17:41:31Z"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert resource.table([item], include="None")["rows"][0]["object"] is None


CONFIGMAP = {
    "client-ca-file": "ignored",
    "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
    "requestheader-allowed-names": '["front-proxy-client"]',
    "requestheader-username-headers": '["X-Remote-User"]',
    "requestheader-group-headers": '["X-Remote-Group"]',
    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
}


def test_the_front_proxys_user_groups_and_extras_are_read_from_every_header_line() -> None:
    config = RequestHeaderConfig.from_configmap(CONFIGMAP)
    headers = [
        ("X-Remote-User", "alice"),
        ("x-remote-group", "devs"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-Scopes%2Fa", "one"),
        ("X-Remote-Extra-Scopes%2Fa", "two"),
    ]
    user = authenticate(config, "front-proxy-client", headers)
    assert user == User("alice", ("devs", "system:authenticated"), {"scopes/a": ("one", "two")})
    sar = review(user, Attributes("list", "demo"))
    assert sar["spec"]["groups"] == ["devs", "system:authenticated"]
    assert sar["spec"]["resourceAttributes"] == {
        "verb": "list",
        "group": "repositories.stash.appscode.com",
        "version": "v1alpha1",
        "resource": "snapshots",
        "namespace": "demo",
    }


def test_only_the_allowed_proxy_with_a_user_is_trusted() -> None:
    config = RequestHeaderConfig.from_configmap(CONFIGMAP)
    with pytest.raises(Unauthenticated, match="no client certificate"):
        authenticate(config, None, [("X-Remote-User", "alice")])
    with pytest.raises(Unauthenticated, match="not one of requestheader-allowed-names"):
        authenticate(config, "someone-else", [("X-Remote-User", "alice")])
    with pytest.raises(Unauthenticated, match="named no user"):
        authenticate(config, "front-proxy-client", [("X-Remote-Group", "devs")])
    with pytest.raises(FrontProxyUnconfigured, match="no requestheader-client-ca-file"):
        RequestHeaderConfig.from_configmap({"client-ca-file": "x"})


def test_refusals_are_worded_as_the_api_server_words_them() -> None:
    user = User("bob")
    assert Attributes("get", "demo", "r-b54ee4a0").forbidden_message(user) == (
        'snapshots.repositories.stash.appscode.com "r-b54ee4a0" is forbidden: User "bob" cannot get resource '
        '"snapshots" in API group "repositories.stash.appscode.com" in the namespace "demo"'
    )
    assert Attributes("list", None).forbidden_message(user).endswith("at the cluster scope")
