"""The resource dump's pure parts: sanitizing, the file layout, params, scopes and version preference."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stashlet.agent.kubedump.apiserver import ApiResource, list_pages, preferred_resources, resources_of
from stashlet.agent.kubedump.dump import (
    KUBEDUMP_TASKS,
    DumpError,
    DumpOptions,
    DumpScope,
    is_kubedump_task,
    options_from_params,
    scope_of,
    to_yaml,
)
from stashlet.agent.kubedump.sanitize import is_server_generated, sanitize
from stashlet.agent.kubedump.tree import DumpReport, TreeWriter
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.common import Param
from stashlet.kube.errors import Gone

VERBS = frozenset({"create", "get", "list"})


def resource(group: str, version: str, name: str, kind: str, namespaced: bool = True) -> ApiResource:
    return ApiResource(group, version, name, kind, namespaced, VERBS)


def server_meta(**extra: Any) -> dict[str, Any]:
    return {
        "name": "x",
        "namespace": "ns",
        "uid": "0b0e7c9c-1111-2222-3333-444455556666",
        "resourceVersion": "123",
        "generation": 4,
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "selfLink": "/api/v1/namespaces/ns/x",
        "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "keep.example.com/mine": "yes",
        },
        **extra,
    }


def config(
    task: str | None, target: dict[str, Any] | None, params: list[dict[str, str]] | None = None
) -> Any:
    spec: dict[str, Any] = {
        "repository": {"name": "repo"},
        "retentionPolicy": {"name": "keep", "keepLast": 1, "prune": True},
    }
    if task is not None:
        spec["task"] = {"name": task, **({"params": params} if params else {})}
    if target is not None:
        spec["target"] = target
    return BackupConfiguration.from_dict(
        {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
         "metadata": {"name": "bc", "namespace": "home"}, "spec": spec}
    )  # fmt: skip


def test_sanitize_drops_server_set_metadata_and_status_but_keeps_the_users_fields() -> None:
    """managedFields, resourceVersion, uid, creationTimestamp, generation, selfLink, status and the
    last-applied annotation go; labels, other annotations, spec and data stay."""
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": server_meta(labels={"app": "a"}),
        "data": {"k": "v"},
        "status": {"phase": "x"},
    }
    out = sanitize("", "ConfigMap", obj)
    assert out == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "x",
            "namespace": "ns",
            "annotations": {"keep.example.com/mine": "yes"},
            "labels": {"app": "a"},
        },
        "data": {"k": "v"},
    }


def test_sanitize_drops_owner_references_so_controllers_adopt_the_reapplied_objects() -> None:
    """ownerReferences carry the old owner's uid (required, never valid again): they go."""
    meta = server_meta(
        ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u"}]
    )
    out = sanitize("", "Pod", {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {}})
    assert "ownerReferences" not in out["metadata"]


def test_sanitize_service_keeps_headless_but_drops_allocated_cluster_ips() -> None:
    """An allocated clusterIP/clusterIPs would clash on re-apply; ``None`` (headless) is the user's choice."""
    allocated = {
        "metadata": server_meta(),
        "spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "ports": []},
    }
    headless = {"metadata": server_meta(), "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    assert sanitize("", "Service", allocated)["spec"] == {"ports": []}
    assert sanitize("", "Service", headless)["spec"] == {"clusterIP": "None", "clusterIPs": ["None"]}


def test_sanitize_pv_claim_ref_pod_node_job_selector_and_token_secret() -> None:
    """A PV's claimRef loses uid/resourceVersion; a Pod its nodeName/priority; a Job its generated
    selector and controller-uid labels; a token Secret its data and ServiceAccount uid."""
    pv = sanitize(
        "",
        "PersistentVolume",
        {
            "metadata": server_meta(),
            "spec": {"claimRef": {"name": "c", "namespace": "n", "uid": "u", "resourceVersion": "1"}},
        },
    )
    assert pv["spec"]["claimRef"] == {"name": "c", "namespace": "n"}
    pod = sanitize(
        "", "Pod", {"metadata": server_meta(), "spec": {"nodeName": "n1", "priority": 0, "containers": []}}
    )
    assert pod["spec"] == {"containers": []}
    job = sanitize(
        "batch",
        "Job",
        {
            "metadata": server_meta(),
            "spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {
                    "metadata": {
                        "creationTimestamp": None,
                        "labels": {
                            "controller-uid": "u",
                            "batch.kubernetes.io/controller-uid": "u",
                            "job-name": "x",
                        },
                    },
                    "spec": {},
                },
            },
        },
    )
    assert job["spec"] == {"template": {"metadata": {"labels": {"job-name": "x"}}, "spec": {}}}
    manual = {
        "metadata": server_meta(),
        "spec": {"manualSelector": True, "selector": {"matchLabels": {"a": "b"}}},
    }
    assert sanitize("batch", "Job", copy.deepcopy(manual))["spec"] == manual["spec"]
    token = sanitize(
        "",
        "Secret",
        {
            "type": "kubernetes.io/service-account-token",
            "metadata": server_meta(
                annotations={
                    "kubernetes.io/service-account.name": "sa",
                    "kubernetes.io/service-account.uid": "u",
                }
            ),
            "data": {"token": "dG9r"},
        },
    )
    assert "data" not in token
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "sa"}
    plain = sanitize("", "Secret", {"type": "Opaque", "metadata": server_meta(), "data": {"p": "cQ=="}})
    assert plain["data"] == {"p": "cQ=="}


def test_control_plane_generated_objects_are_recognised() -> None:
    """kube-root-ca.crt and the objects the endpoint, endpointslice and IP allocators label are derived."""
    assert is_server_generated("", "ConfigMap", {"metadata": {"name": "kube-root-ca.crt"}})
    assert not is_server_generated("", "ConfigMap", {"metadata": {"name": "app-config"}})
    managed = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert is_server_generated(
        "discovery.k8s.io", "EndpointSlice", {"metadata": {"name": "s", "labels": managed}}
    )
    own = {"endpointslice.kubernetes.io/managed-by": "my-controller"}
    assert not is_server_generated(
        "discovery.k8s.io", "EndpointSlice", {"metadata": {"name": "s", "labels": own}}
    )


def test_layout_puts_cluster_and_namespaced_objects_apart(tmp_path: Path) -> None:
    """cluster/<group|core>/<version>/<Kind>/<name>.yaml for cluster-scoped objects,
    namespaces/<ns>/<group|core>/<version>/<Kind>/<name>.yaml for namespaced ones, as the writer writes
    them; a name that is no file name is refused."""
    cm = resource("", "v1", "configmaps", "ConfigMap")
    deploy = resource("apps", "v1", "deployments", "Deployment")
    role = resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)
    writer = TreeWriter(DumpReport(tmp_path, DumpScope("namespace", namespace="a")), sanitize=False)
    writer.write(cm, {"metadata": {"name": "c", "namespace": "a"}})
    writer.write(deploy, {"metadata": {"name": "d", "namespace": "a"}})
    writer.write(role, {"metadata": {"name": "system:x"}})
    assert {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.yaml")} == {
        "namespaces/a/core/v1/ConfigMap/c.yaml",
        "namespaces/a/apps/v1/Deployment/d.yaml",
        "cluster/rbac.authorization.k8s.io/v1/ClusterRole/system:x.yaml",
    }
    with pytest.raises(ValueError, match="no usable name"):
        writer.write(cm, {"metadata": {"name": "../x", "namespace": "a"}})


def test_yaml_round_trips_and_keeps_multiline_text_readable() -> None:
    """The YAML written parses back to the same object; multi-line strings are literal blocks."""
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"script": "a\nb\n", "n": "007"},
    }
    text = to_yaml(obj)
    assert yaml.safe_load(text) == obj
    assert "script: |" in text
    assert text.startswith("apiVersion: v1\nkind: ConfigMap\n")


class _ReferenceDumper(yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper):  # type: ignore[misc]
    """PyYAML's own safe representer (the same emitter as to_yaml's), multi-line strings as literal
    blocks: what to_yaml must equal."""


_ReferenceDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


def test_yaml_is_what_the_safe_representer_writes() -> None:
    """to_yaml builds its nodes itself (for speed): the text is the same as PyYAML's safe representer
    writes, for every kind of JSON value and the strings that need quoting or a block."""
    tricky = [
        "true",
        "False",
        "null",
        "~",
        "007",
        "0x1F",
        "1e3",
        "",
        " lead",
        "trail ",
        "a: b",
        "- x",
        "#c",
        "@x",
        "yes",
        "on",
        "2026-12-05",
        "é ü 漢",
        "tab\there",
        "line\n",
        "a\nb\n",
        "a \nb",
        "\nlead",
        "'q'",
        '"dq"',
        "*ref",
        "&anchor",
        "!tag",
        "%x",
        "{x}",
        "[y]",
        ">fold",
        "|lit",
    ]
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"a": "1"}, "annotations": {}, "finalizers": []},
        "data": {f"k{i}": value for i, value in enumerate(tricky)},
        "numbers": [0, -1, 2**63, 1.5, -0.25, 1e20, 3.0],
        "flags": [True, False, None],
        "nested": [{"a": [{"b": []}, {}]}, [], [[1, "x"]]],
        "true": "key that looks like a boolean",
        "": "empty key",
    }
    expected = yaml.dump(
        obj, Dumper=_ReferenceDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    assert to_yaml(obj) == expected
    assert yaml.safe_load(to_yaml(obj)) == obj


def test_params_parse_with_defaults_and_reject_non_booleans() -> None:
    """Defaults: sanitize on, dependants off, no selector; excludeResources is a comma list."""
    assert options_from_params(None) == DumpOptions()
    opts = options_from_params(
        [
            Param(name="labelSelector", value=" app=web "),
            Param(name="sanitize", value="false"),
            Param(name="includeDependants", value="true"),
            Param(name="excludeResources", value="Secrets, leases.coordination.k8s.io"),
        ]
    )
    assert (opts.label_selector, opts.sanitize, opts.include_dependants) == ("app=web", False, True)
    assert opts.excludes(resource("", "v1", "secrets", "Secret"))
    assert opts.excludes(resource("coordination.k8s.io", "v1", "leases", "Lease"))
    assert not opts.excludes(resource("", "v1", "configmaps", "ConfigMap"))
    assert DumpOptions().excludes(resource("events.k8s.io", "v1", "events", "Event"))
    assert DumpOptions().excludes(
        resource("stash.appscode.com", "v1beta1", "backupsessions", "BackupSession")
    )
    with pytest.raises(DumpError, match="includeDependants"):
        options_from_params([Param(name="includeDependants", value="maybe")])


def test_scope_from_the_configuration() -> None:
    """No target: cluster; a v1 Namespace ref: that namespace; any other ref: that application."""
    assert "kubedump-backup-0.1.0" in KUBEDUMP_TASKS
    assert is_kubedump_task(config("kubedump-backup-0.1.0", None))
    assert not is_kubedump_task(config("mysql-backup-8.0.21", None))
    assert not is_kubedump_task(config(None, None))
    cluster = scope_of(config("kubedump-backup-0.1.0", None))
    assert cluster == DumpScope("cluster")
    assert (cluster.ref().kind, cluster.ref().name) == ("Cluster", None)
    ns = scope_of(
        config("kubedump-backup-0.1.0", {"ref": {"apiVersion": "v1", "kind": "Namespace", "name": "demo"}})
    )
    assert (ns.kind, ns.namespace, ns.ref().kind, ns.ref().name) == ("namespace", "demo", "Namespace", "demo")
    app = scope_of(
        config(
            "kubedump-backup-0.1.0", {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
        )
    )
    assert (app.kind, app.namespace, app.ref().kind, app.ref().name) == (
        "application",
        "home",
        "Deployment",
        "web",
    )
    with pytest.raises(DumpError, match="apiVersion"):
        scope_of(config("kubedump-backup-0.1.0", {"ref": {"kind": "Deployment", "name": "web"}}))


def test_each_resource_comes_from_the_first_version_that_serves_it() -> None:
    """The preferred version wins; a kind served only by another version of the group is still found;
    subresources are not kinds."""

    def entry(name: str, kind: str, verbs: list[str]) -> dict[str, Any]:
        return {"name": name, "kind": kind, "namespaced": True, "verbs": verbs}

    beta = resources_of(
        "stash.appscode.com",
        "v1beta1",
        {
            "resources": [
                entry("backupconfigurations", "BackupConfiguration", ["list"]),
                entry("backupconfigurations/status", "BackupConfiguration", ["get"]),
            ]
        },
    )
    alpha = resources_of(
        "stash.appscode.com",
        "v1alpha1",
        {
            "resources": [
                entry("repositories", "Repository", ["list"]),
                entry("backupconfigurations", "BackupConfiguration", ["list"]),
            ]
        },
    )
    chosen = preferred_resources(
        [("stash.appscode.com", ["v1beta1", "v1alpha1"])],
        {("stash.appscode.com", "v1beta1"): beta, ("stash.appscode.com", "v1alpha1"): alpha},
    )
    assert [(r.name, r.version) for r in chosen] == [
        ("backupconfigurations", "v1beta1"),
        ("repositories", "v1alpha1"),
    ]
    only_alpha = preferred_resources(
        [("stash.appscode.com", ["v1beta1", "v1alpha1"])], {("stash.appscode.com", "v1alpha1"): alpha}
    )
    assert {(r.name, r.version) for r in only_alpha} == {
        ("repositories", "v1alpha1"),
        ("backupconfigurations", "v1alpha1"),
    }


class _ScriptedLists:
    """A stand-in for the API server's list answers (KubeApi.send only), scripted page by page: the
    paging logic alone, including a continue token the server has let expire (410), which a real
    server gives only after its etcd compacts (every five minutes)."""

    def __init__(self, answers: list[dict[str, Any] | Exception]) -> None:
        self.answers = answers
        self.asked: list[str | None] = []

    async def send(self, method: str, path: str, *, query: Any = None, **_: Any) -> dict[str, Any]:
        self.asked.append(query.get("continue"))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _page(names: list[str], token: str = "") -> dict[str, Any]:
    return {"items": [{"metadata": {"name": n}} for n in names], "metadata": {"continue": token}}


async def test_pages_follow_continue_tokens_and_start_over_once_a_token_expired() -> None:
    """Pages come in order with apiVersion/kind set; the next page is asked for before the current one
    is handed out; a 410 on a continue token lists again from the top."""
    cm = resource("", "v1", "configmaps", "ConfigMap")
    api = _ScriptedLists([_page(["a"], "t1"), Gone("too old"), _page(["a"], "t2"), _page(["b"])])
    seen = []
    async for page in list_pages(api, cm, namespace="ns", page_size=1):  # type: ignore[arg-type]
        seen.append([(o["kind"], o["apiVersion"], o["metadata"]["name"]) for o in page])
        if len(seen) == 1:
            assert api.asked == [None, "t1"]  # asked ahead, before the first page was written
    assert seen == [[("ConfigMap", "v1", "a")], [("ConfigMap", "v1", "a")], [("ConfigMap", "v1", "b")]]
    assert api.asked == [None, "t1", None, "t2"]


async def test_a_caller_that_stops_early_leaves_no_request_behind() -> None:
    """Closing the pages early cancels the page asked for ahead (no stray task, no lost error)."""
    cm = resource("", "v1", "configmaps", "ConfigMap")
    api = _ScriptedLists([_page(["a"], "t1"), Gone("expired")])
    pages = list_pages(api, cm, namespace="ns")  # type: ignore[arg-type]
    async for _ in pages:
        break
    await pages.aclose()
    assert api.asked == [None, "t1"]
