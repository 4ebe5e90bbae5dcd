"""The generated CRDs: committed and current, named as in Stash, closed, strict where it matters."""

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from stashlet.api import crdgen, names
from stashlet.api.openapi import SchemaError, type_schema

CHART_CRDS = Path(__file__).resolve().parents[2] / "charts" / "stashlet" / "crds"

Errors = Callable[[dict[str, Any]], list[str]]

# Objects embedding Kubernetes types; only these may preserve unknown fields.
FREE_FORM_PARENTS = {"runtimeSettings", "hooks", "local"}
FREE_FORM_FIELDS = {"interimVolumeTemplate", "volumeClaimTemplates"}


def crd(kind: str) -> dict[str, Any]:
    """The generated CRD of a kind."""
    return crdgen.build_crd(next(info for info in crdgen.CRDS if info.kind == kind))


def root(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a kind."""
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def nodes(
    schema: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every schema node with its path of property names (``[]`` for array items)."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, (*path, name))
    if "items" in schema:
        yield from nodes(schema["items"], (*path, "[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], (*path, "{}"))


def at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    """The schema node at a dotted property path."""
    for name in dotted.split("."):
        schema = schema["properties"][name]
    return schema


def test_committed_crds_match_the_models(tmp_path: Path) -> None:
    """Regenerating the CRDs yields byte-identical files to the ones committed in the chart, and no others."""
    written = crdgen.write_all(tmp_path)
    assert sorted(p.name for p in CHART_CRDS.glob("*.yaml")) == sorted(p.name for p in written)
    for path in written:
        assert (CHART_CRDS / path.name).read_bytes() == path.read_bytes(), f"regenerate {path.name}"


def test_generation_is_deterministic() -> None:
    """Rendering the same CRD twice gives the same text, and the text parses back to the CRD."""
    for info in crdgen.CRDS:
        first = crdgen.render(crdgen.build_crd(info))
        assert first == crdgen.render(crdgen.build_crd(info))
        assert yaml.safe_load(first) == crdgen.build_crd(info)


def test_command_line_writes_one_file_per_crd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m stashlet.api.crdgen OUTDIR`` writes the five files, named after group and plural."""
    assert crdgen.main([str(tmp_path / "out")]) == 0
    expected = {
        f"stash.appscode.com_{plural}.yaml"
        for plural in (
            "repositories",
            "backupconfigurations",
            "backupsessions",
            "restoresessions",
            "backupblueprints",
        )
    }
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected
    assert len(capsys.readouterr().out.splitlines()) == 5


ALL = ["stash", "appscode", "all"]
NAMES = {
    "Repository": ("repositories", "repository", "v1alpha1", ["repo"], ["stash", "appscode"], "Namespaced"),
    "BackupConfiguration": (
        "backupconfigurations",
        "backupconfiguration",
        "v1beta1",
        ["bc"],
        ALL,
        "Namespaced",
    ),
    "BackupSession": ("backupsessions", "backupsession", "v1beta1", ["bs"], ALL, "Namespaced"),
    "RestoreSession": ("restoresessions", "restoresession", "v1beta1", ["restore"], ALL, "Namespaced"),
    "BackupBlueprint": (
        "backupblueprints",
        "backupblueprint",
        "v1beta1",
        ["bb"],
        ["stash", "appscode"],
        "Cluster",
    ),
}


@pytest.mark.parametrize("kind", list(NAMES))
def test_names_scope_and_version(kind: str) -> None:
    """Each CRD has Stash's group, names, short names, categories, scope and one served storage version."""
    plural, singular, version, short, categories, scope = NAMES[kind]
    definition = crd(kind)
    assert definition["apiVersion"] == "apiextensions.k8s.io/v1"
    assert definition["metadata"]["name"] == f"{plural}.{names.GROUP}"
    spec = definition["spec"]
    assert spec["group"] == names.GROUP
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": singular,
        "shortNames": short,
        "categories": categories,
    }
    assert spec["scope"] == scope
    [entry] = spec["versions"]
    assert (entry["name"], entry["served"], entry["storage"]) == (version, True, True)


def test_no_short_name_shadows_a_builtin_resource() -> None:
    """Short names avoid kubectl's built-in ones (rs is ReplicaSet, so RestoreSession uses restore)."""
    builtin = {
        "rs",
        "rc",
        "ds",
        "deploy",
        "sts",
        "po",
        "svc",
        "cm",
        "ns",
        "no",
        "pv",
        "pvc",
        "sa",
        "ep",
        "cj",
    }
    for info in crdgen.CRDS:
        assert not builtin & set(info.short_names)


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (
            "Repository",
            [
                ("INTEGRITY", ".status.integrity", "boolean"),
                ("SIZE", ".status.totalSize", "string"),
                ("SNAPSHOT-COUNT", ".status.snapshotCount", "integer"),
                ("LAST-SUCCESSFUL-BACKUP", ".status.lastBackupTime", "date"),
                ("AGE", ".metadata.creationTimestamp", "date"),
            ],
        ),
        (
            "BackupConfiguration",
            [
                ("TASK", ".spec.task.name", "string"),
                ("SCHEDULE", ".spec.schedule", "string"),
                ("PAUSED", ".spec.paused", "boolean"),
                ("PHASE", ".status.phase", "string"),
                ("AGE", ".metadata.creationTimestamp", "date"),
            ],
        ),
        (
            "BackupSession",
            [
                ("INVOKER-TYPE", ".spec.invoker.kind", "string"),
                ("INVOKER-NAME", ".spec.invoker.name", "string"),
                ("PHASE", ".status.phase", "string"),
                ("DURATION", ".status.sessionDuration", "string"),
                ("AGE", ".metadata.creationTimestamp", "date"),
            ],
        ),
        (
            "RestoreSession",
            [
                ("REPOSITORY", ".spec.repository.name", "string"),
                ("PHASE", ".status.phase", "string"),
                ("DURATION", ".status.sessionDuration", "string"),
                ("AGE", ".metadata.creationTimestamp", "date"),
            ],
        ),
        (
            "BackupBlueprint",
            [
                ("TASK", ".spec.task.name", "string"),
                ("SCHEDULE", ".spec.schedule", "string"),
                ("REPO-NAMESPACE", ".spec.repoNamespace", "string"),
                ("AGE", ".metadata.creationTimestamp", "date"),
            ],
        ),
    ],
)
def test_printer_columns_print_as_the_seeds_show(kind: str, columns: list[tuple[str, str, str]]) -> None:
    """The columns print (names upper-cased) in the seeds' order, from fields the schema has."""
    printed = [
        (c["name"].upper(), c["jsonPath"], c["type"])
        for c in crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert printed == columns
    schema = root(kind)
    for _, json_path, _ in columns:
        if not json_path.startswith(".metadata."):
            at(schema, json_path.removeprefix("."))


def test_status_subresource_where_there_is_a_status() -> None:
    """Every kind with a status has the status subresource; BackupBlueprint has neither."""
    for info in crdgen.CRDS:
        entry = crdgen.build_crd(info)["spec"]["versions"][0]
        has_status = "status" in entry["schema"]["openAPIV3Schema"]["properties"]
        assert has_status == (info.kind != "BackupBlueprint")
        assert (entry.get("subresources") == {"status": {}}) == has_status


@pytest.mark.parametrize("kind", [info.kind for info in crdgen.CRDS])
def test_schema_is_structural(kind: str) -> None:
    """Every node has a type (int-or-string: anyOf integer and string); metadata is just an object."""
    schema = root(kind)
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]
    for path, node in nodes(schema):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
            continue
        assert node.get("type") in {"string", "integer", "number", "boolean", "object", "array"}, path
        assert "anyOf" not in node, path
        assert ("items" in node) == (node["type"] == "array"), path
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", path
        for required in node.get("required", []):
            assert required in node["properties"], path


@pytest.mark.parametrize("kind", [info.kind for info in crdgen.CRDS])
def test_only_embedded_kubernetes_types_preserve_unknown_fields(kind: str) -> None:
    """Spec and status are closed; only free-form embedded Kubernetes objects keep unknown fields."""
    schema = root(kind)
    preserving = [path for path, node in nodes(schema) if node.get("x-kubernetes-preserve-unknown-fields")]
    assert bool(preserving) == (kind != "BackupSession"), "runtimeSettings and friends are free-form"
    for path in preserving:
        embedded = path[-2] in FREE_FORM_PARENTS or path[-1] in FREE_FORM_FIELDS
        embedded_item = path[-1] == "[]" and path[-2] in FREE_FORM_FIELDS
        assert embedded or embedded_item, path
        assert node_at(schema, path).get("type") == "object", path
    for top in ("spec", "status"):
        if top in schema["properties"]:
            assert "x-kubernetes-preserve-unknown-fields" not in schema["properties"][top]


def node_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The schema node at a path produced by ``nodes``."""
    for name in path:
        schema = schema["items"] if name == "[]" else schema["properties"][name]
    return schema


def test_formats_defaults_and_quantities() -> None:
    """Integers carry Stash's int formats, times date-time, quantities int-or-string; defaults as Stash."""
    bc = root("BackupConfiguration")
    assert at(bc, "spec.retentionPolicy.keepLast")["format"] == "int64"
    assert at(bc, "spec.backupHistoryLimit")["format"] == "int32"
    assert at(bc, "spec.target.replicas")["format"] == "int32"
    assert at(bc, "spec.tempDir.sizeLimit")["x-kubernetes-int-or-string"] is True
    assert at(bc, "spec.driver")["default"] == "Restic"
    assert at(bc, "status.conditions")["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert at(bc, "spec.task.params")["items"]["required"] == ["name", "value"]
    repo = root("Repository")
    assert at(repo, "spec.usagePolicy.allowedNamespaces.from")["default"] == "Same"
    assert at(repo, "status.lastBackupTime")["format"] == "date-time"
    assert at(repo, "spec.backend.local.hostPath")["x-kubernetes-preserve-unknown-fields"] is True
    assert (
        at(root("BackupSession"), "status.targets")["items"]["properties"]["totalHosts"]["format"] == "int32"
    )


def test_validation_rules_name_their_fields() -> None:
    """CEL rules guard the one-backend, Selector-needs-selector, repository-needed and policy-keeps-something
    invariants (the value rules are tests/api/test_refusals.py's)."""
    for kind in ("Repository", "BackupBlueprint"):
        [rule] = at(root(kind), "spec.backend")["x-kubernetes-validations"]
        assert "backend.s3" in rule["message"]
        assert all(
            f"has(self.{b})" in rule["rule"] for b in ("local", "s3", "gcs", "azure", "swift", "b2", "rest")
        )
        [selector_rule] = at(root(kind), "spec.usagePolicy.allowedNamespaces")["x-kubernetes-validations"]
        assert "allowedNamespaces.selector" in selector_rule["message"]
    for kind in ("BackupConfiguration", "RestoreSession"):
        rule, *_ = at(root(kind), "spec")["x-kubernetes-validations"]
        assert "spec.repository" in rule["message"]
    for kind in ("BackupConfiguration", "BackupBlueprint"):
        [retention] = [r for r in at(root(kind), "spec")["x-kubernetes-validations"] if "fieldPath" in r]
        assert retention["fieldPath"] == ".retentionPolicy"
        assert "keepLast" in retention["message"]


def test_seed_object_validates_against_its_crd(seed_object: dict[str, Any], crd_errors: Errors) -> None:
    """Every Stash object in the seeds is accepted by the generated schema, unknown-field checks included."""
    assert crd_errors(seed_object) == []


def _bc(seed_objects: list[dict[str, Any]]) -> dict[str, Any]:
    return copy.deepcopy(next(o for o in seed_objects if o["kind"] == "BackupConfiguration"))


def test_a_misspelt_field_is_rejected(seed_objects: list[dict[str, Any]], crd_errors: Errors) -> None:
    """A typo such as retentionPolicy.kepLast is an unknown field, not silently dropped."""
    bc = _bc(seed_objects)
    bc["spec"]["retentionPolicy"]["kepLast"] = 5
    bc["spec"]["schedul"] = "* * * * *"
    assert crd_errors(bc) == [
        'unknown field "spec.retentionPolicy.kepLast"',
        'unknown field "spec.schedul"',
    ]


def test_free_form_sections_accept_anything(seed_objects: list[dict[str, Any]], crd_errors: Errors) -> None:
    """runtimeSettings.container/pod and hooks take any Kubernetes fields; a typo one level up is rejected."""
    bc = _bc(seed_objects)
    bc["spec"]["runtimeSettings"] = {"container": {"nice": {"adjustment": 5}}, "pod": {"anything": [1]}}
    bc["spec"]["hooks"] = {"preBackup": {"exec": {"command": ["true"]}, "containerName": "app"}}
    assert crd_errors(bc) == []
    bc["spec"]["runtimeSettings"]["contaner"] = {}
    assert crd_errors(bc) == ['unknown field "spec.runtimeSettings.contaner"']


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        (
            {"apiVersion": names.API_VERSION_ALPHA, "kind": "Repository", "metadata": {"name": "r"}},
            "spec: Required value",
        ),
        (
            {"apiVersion": names.API_VERSION_ALPHA, "kind": "Repository", "spec": {"wipeOut": True}},
            "spec.backend: Required value",
        ),
        (
            {
                "apiVersion": names.API_VERSION_BETA,
                "kind": "BackupSession",
                "spec": {"invoker": {"name": "b"}},
            },
            "spec.invoker.kind: Required value",
        ),
        (
            {
                "apiVersion": names.API_VERSION_BETA,
                "kind": "BackupSession",
                "spec": {"invoker": {"kind": "B"}},
            },
            "spec.invoker.name: Required value",
        ),
        (
            {"apiVersion": names.API_VERSION_BETA, "kind": "BackupSession", "spec": {}},
            "spec.invoker: Required value",
        ),
        (
            {
                "apiVersion": names.API_VERSION_BETA,
                "kind": "BackupConfiguration",
                "spec": {"repository": {"namespace": "x"}, "retentionPolicy": {"name": "p", "prune": True}},
            },
            "spec.repository.name: Required value",
        ),
        (
            {
                "apiVersion": names.API_VERSION_BETA,
                "kind": "BackupConfiguration",
                "spec": {"repository": {"name": "r"}},
            },
            "spec.retentionPolicy: Required value",
        ),
        (
            {
                "apiVersion": names.API_VERSION_ALPHA,
                "kind": "Repository",
                "spec": {"backend": {"s3": {"bucket": "b"}}},
            },
            "spec.backend.s3.endpoint: Required value",
        ),
    ],
)
def test_missing_required_fields_are_named(obj: dict[str, Any], error: str, crd_errors: Errors) -> None:
    """A missing required field is reported with its full path."""
    assert error in crd_errors(obj)


def test_wrong_types_are_named(seed_objects: list[dict[str, Any]], crd_errors: Errors) -> None:
    """A value of the wrong type is reported at its field."""
    bc = _bc(seed_objects)
    bc["spec"]["retentionPolicy"]["keepLast"] = "five"
    bc["spec"]["paused"] = "yes"
    bc["spec"]["target"]["paths"] = "/source/data"
    errors = crd_errors(bc)
    assert "spec.retentionPolicy.keepLast: Invalid value: 'five': must be of type integer" in errors
    assert "spec.paused: Invalid value: 'yes': must be of type boolean" in errors
    assert "spec.target.paths: Invalid value: '/source/data': must be of type array" in errors


def test_an_unknown_usage_policy_is_rejected(seed_objects: list[dict[str, Any]], crd_errors: Errors) -> None:
    """usagePolicy.allowedNamespaces.from only takes All, Same or Selector."""
    repo = copy.deepcopy(
        next(o for o in seed_objects if o["kind"] == "Repository" and "usagePolicy" in o["spec"])
    )
    repo["spec"]["usagePolicy"]["allowedNamespaces"]["from"] = "Everyone"
    assert crd_errors(repo) == [
        "spec.usagePolicy.allowedNamespaces.from: Unsupported value: 'Everyone': "
        "supported values: ['All', 'Same', 'Selector']"
    ]


def test_an_unknown_phase_is_rejected(seed_objects: list[dict[str, Any]], crd_errors: Errors) -> None:
    """Status phases are enums, so a misspelt phase written by a controller is refused."""
    session = copy.deepcopy(next(o for o in seed_objects if o["kind"] == "BackupSession"))
    session["status"] = {"phase": "Skiped"}
    assert len(crd_errors(session)) == 1
    session["status"] = {"phase": "Skipped", "sessionDuration": "1s"}
    assert crd_errors(session) == []


@pytest.mark.parametrize(
    ("annotation", "schema"),
    [
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (dict[str, str], {"type": "object", "additionalProperties": {"type": "string"}}),
        (dict[str, Any], {"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (float | None, {"type": "number"}),
        (bool, {"type": "boolean"}),
    ],
)
def test_type_mapping(annotation: Any, schema: dict[str, Any]) -> None:
    """Python annotations map to the structural schema Kubernetes expects."""
    assert type_schema(annotation) == schema


@pytest.mark.parametrize("annotation", [int | str, dict[int, str], bytes, Literal["a", 1]])
def test_unstructural_types_are_refused(annotation: Any) -> None:
    """Types with no structural schema (plain unions, non-string keys, unknown classes) are an error."""
    with pytest.raises(SchemaError):
        type_schema(annotation)
