"""Refused at the door: every spec value that could never run, and where stashlet refuses it (issue 14.3).

:data:`INVENTORY` walks every place the agent, the operator, restic or the CronJob controller rejects a
spec value at run time, and says where stashlet refuses it instead, so that a configuration is never Ready
and then failing:

- ``schema``: the CRD (a CEL rule on the field, or on its object with ``fieldPath``): the API server answers
  422 and its message starts with the field's path. ``tests/api/test_refusals_apiserver.py`` sends each
  row's bad value to the real API server; here each row's rule is found in the generated CRD.
- ``reconciler``: the operator's validation (``ValidationPassed`` False naming the field, phase
  ``Invalid``): the rule needs another object or a parser no CEL rule holds. Schema rows are also checked
  by the reconciler when an object stored before the rule existed still holds the value
  (``stashlet.operator.backup.validation.value_problems``: tests/operator/backup/test_validation.py).
- ``accepted``: the value runs (restic's or Stash's own meaning), so it is not refused.
- ``run time``: left to the run, and why (the run's refusal names the field).

The accepted edge values (``keepLast: -1``, ``keepLast: 0`` beside another rule, ``delay: 0s``, a
VolumeSnapshotter policy without a rule, ...) are in :data:`ACCEPTED`; restic 0.18.1's own answers to the
retention values are in ``tests/agent/restic/test_retention_restic.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from stashlet.api import crdgen
from stashlet.api.durations import go_duration_problem, parse_go_duration
from stashlet.api.repository import KEEPS_NOTHING_MESSAGE, RetentionPolicy, retention_problems
from stashlet.api.schedules import schedule_problem

Door = Literal["schema", "reconciler", "accepted", "run time"]

REPOSITORY: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1alpha1",
    "kind": "Repository",
    "metadata": {"name": "repo"},
    "spec": {"backend": {"gcs": {"bucket": "b", "prefix": "p"}, "storageSecretName": "s"}},
}
BACKUP_CONFIGURATION: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "BackupConfiguration",
    "metadata": {"name": "bc"},
    "spec": {
        "repository": {"name": "repo"},
        "schedule": "*/5 * * * *",
        "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "paths": ["/d"]},
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    },
}
RESTORE_SESSION: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "RestoreSession",
    "metadata": {"name": "rs"},
    "spec": {"repository": {"name": "repo"}, "target": {"ref": {"kind": "Deployment", "name": "web"}}},
}
BACKUP_BLUEPRINT: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "BackupBlueprint",
    "metadata": {"name": "bb"},
    "spec": {
        "backend": {"gcs": {"bucket": "b", "prefix": "${TARGET_NAME}"}, "storageSecretName": "s"},
        "schedule": "*/5 * * * *",
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    },
}
BASES = {obj["kind"]: obj for obj in (REPOSITORY, BACKUP_CONFIGURATION, RESTORE_SESSION, BACKUP_BLUEPRINT)}


def with_spec(kind: str, **changes: Any) -> dict[str, Any]:
    """The base object of ``kind`` with dotted spec paths set (``None`` deletes the field)."""
    obj = copy.deepcopy(BASES[kind])
    for dotted, value in changes.items():
        node = obj["spec"]
        *parents, last = dotted.split("__")
        for name in parents:
            node = node.setdefault(name, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return obj


def bad(path: str, kind: str, **changes: Any) -> tuple[str, dict[str, Any]]:
    """A bad object and the path of the field the API server's refusal names."""
    return path, with_spec(kind, **changes)


@dataclass(frozen=True)
class Row:
    """One spec value rejected at run time, who rejects it, and where stashlet refuses it."""

    field: str
    """The field as the refusal names it."""
    refused_at_run_time_by: str
    door: Door
    why: str
    bad: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Objects holding a bad value, each with the path the API server's refusal names (schema rows)."""
    rule_at: tuple[str, str] | None = None
    """(kind, dotted schema path) of the node holding the CEL rule (schema rows)."""
    message: str = ""
    """What the refusal says after the field's path."""


KEEP_COUNT = "must be a count of snapshots to keep, -1 to keep them all"
KEEPS_NOTHING = "keeps no snapshot"
DURATION = "must be a Go duration"

INVENTORY: tuple[Row, ...] = (
    Row(
        "spec.retentionPolicy.keepLast (and keepHourly ... keepYearly)",
        "agent restic/retention.py forget_args (RetentionError); restic: 'negative values not allowed'",
        "schema",
        "a count below -1 can never run; -1 is restic's 'unlimited', 0 is no rule",
        (
            bad(
                "spec.retentionPolicy.keepLast",
                "BackupConfiguration",
                retentionPolicy={"name": "k", "keepLast": -5, "prune": True},
            ),
            bad(
                "spec.retentionPolicy.keepYearly",
                "BackupBlueprint",
                retentionPolicy={"name": "k", "keepYearly": -2, "prune": False},
            ),
        ),
        ("BackupConfiguration", "spec.retentionPolicy.keepLast"),
        KEEP_COUNT,
    ),
    Row(
        "spec.retentionPolicy (no rule, Restic driver)",
        "agent retention.py EmptyRetentionPolicy; restic: 'no policy was specified'",
        "schema",
        "restic 0.18.1 refuses a forget without a rule; the VolumeSnapshotter driver keeps all instead",
        (
            bad(
                "spec.retentionPolicy",
                "BackupConfiguration",
                retentionPolicy={"name": "k", "keepLast": 0, "prune": True},
            ),
            bad(
                "spec.retentionPolicy",
                "BackupBlueprint",
                retentionPolicy={"name": "k", "prune": True, "keepTags": []},
            ),
        ),
        ("BackupConfiguration", "spec"),
        KEEPS_NOTHING,
    ),
    Row(
        "spec.retentionPolicy.keepTags[i]",
        "agent retention.py (_checked: blank, newline, NUL)",
        "schema",
        "a blank tag list would keep every snapshot; a newline or NUL cannot be passed to restic",
        (
            bad(
                "spec.retentionPolicy.keepTags[0]",
                "BackupConfiguration",
                retentionPolicy={"name": "k", "keepTags": [" "], "prune": True},
            ),
        ),
        ("BackupConfiguration", "spec.retentionPolicy.keepTags.[]"),
        "must name tags",
    ),
    Row(
        "spec.timeOut (BackupConfiguration, RestoreSession)",
        "Stash decodes it with Go's time.ParseDuration; the agent's deadline (daemon.py, restore/run.py)",
        "schema",
        "not Go's duration syntax, or not above 0s: every session would fail at once",
        (
            bad("spec.timeOut", "BackupConfiguration", timeOut="30 minutes"),
            bad("spec.timeOut", "BackupConfiguration", timeOut="0s"),
            bad("spec.timeOut", "RestoreSession", timeOut="-5m"),
            bad("spec.timeOut", "RestoreSession", timeOut="12"),
        ),
        ("BackupConfiguration", "spec.timeOut"),
        DURATION,
    ),
    Row(
        "spec.retryConfig.delay",
        "operator backup/retry_policy.py delay_seconds (ValueError)",
        "schema",
        "not Go's duration syntax, or negative",
        (
            bad(
                "spec.retryConfig.delay", "BackupConfiguration", retryConfig={"maxRetry": 2, "delay": "5 min"}
            ),
            bad("spec.retryConfig.delay", "BackupConfiguration", retryConfig={"maxRetry": 2, "delay": "-1s"}),
        ),
        ("BackupConfiguration", "spec.retryConfig.delay"),
        DURATION,
    ),
    Row(
        "spec.target.paths[i]",
        "restic: a relative path is taken from the agent's working directory and recorded absolute, so the "
        "retention's --path finds none of the target's snapshots",
        "schema",
        "a relative path backs up the wrong place and is never retained",
        (bad("spec.target.paths[0]", "BackupConfiguration", target={"paths": ["source/data"]}),),
        ("BackupConfiguration", "spec.target.paths.[]"),
        "must be an absolute path",
    ),
    Row(
        "spec.schedule",
        "the CronJob controller: robfig/cron ParseStandard, and no TZ/CRON_TZ in a new CronJob's schedule",
        "reconciler",
        "a cron parser in CEL would be unreadable; api/schedules.py applies the controller's rules, and the "
        "configuration is Invalid naming spec.schedule before any CronJob, RBAC or sidecar is made",
    ),
    Row(
        "spec.backend (exactly one storage)",
        "agent restic/backend.py build_repository",
        "schema",
        "one storage per repository",
        (bad("spec.backend", "Repository", backend={"storageSecretName": "s"}),),
        ("Repository", "spec.backend"),
        "exactly one of backend.local",
    ),
    Row(
        "spec.backend.local.mountPath",
        "agent restic/backend.py _local: 'local.mountPath must be absolute'",
        "schema",
        "the repository path is the mount path joined with subPath",
        (
            bad(
                "spec.backend.local.mountPath",
                "Repository",
                backend={"storageSecretName": "s", "local": {"mountPath": "repo"}},
            ),
        ),
        ("Repository", "spec.backend.local"),
        "must be an absolute path",
    ),
    Row(
        "spec.backend.local.subPath",
        "agent restic/backend.py _local: 'local.subPath must not contain ..'",
        "schema",
        "the repository must stay inside the volume",
        (
            bad(
                "spec.backend.local.subPath",
                "Repository",
                backend={"storageSecretName": "s", "local": {"mountPath": "/r", "subPath": "a/../../etc"}},
            ),
        ),
        ("Repository", "spec.backend.local"),
        "must stay inside the volume",
    ),
    Row(
        "spec.backend.{s3,gcs,b2}.bucket, {azure,swift}.container",
        "agent restic/backend.py _required",
        "schema",
        "required fields of the storage",
        (
            bad(
                "spec.backend.gcs.bucket",
                "Repository",
                backend={"storageSecretName": "s", "gcs": {"prefix": "p"}},
            ),
        ),
        ("Repository", "spec.backend.gcs"),
        "Required value",
    ),
    Row(
        "spec.usagePolicy.allowedNamespaces (from: Selector without selector)",
        "operator core/usage_policy.py",
        "schema",
        "a Selector policy needs its selector",
        (
            bad(
                "spec.usagePolicy.allowedNamespaces",
                "Repository",
                usagePolicy={"allowedNamespaces": {"from": "Selector"}},
            ),
        ),
        ("Repository", "spec.usagePolicy.allowedNamespaces"),
        "allowedNamespaces.selector is required",
    ),
    Row(
        "spec.repository (Restic driver)",
        "operator backup/validation.py, restore/validation.py",
        "schema",
        "restic needs a Repository",
        (bad("spec", "BackupConfiguration", repository=None), bad("spec", "RestoreSession", repository=None)),
        ("BackupConfiguration", "spec"),
        "spec.repository is required unless spec.driver is VolumeSnapshotter",
    ),
    Row(
        "spec.target.rules / spec.rules of a RestoreSession",
        "agent restore/run.py and operator restore/validation.py, both through api/restore_rules.py",
        "reconciler",
        "list-wide rules (one catch-all rule, a host in one rule) and restic's (include with exclude, "
        "snapshot IDs, absolute paths) in one place both sides share; Stash's webhook checks them too",
    ),
    Row(
        "spec.target.ref, spec.target.volumeMounts[i].name",
        "agent (no workload, no volume)",
        "reconciler",
        "needs the workload: its kind, its pod's volumes, another configuration's sidecar",
    ),
    Row(
        "spec.task.name, spec.runtimeSettings.pod.serviceAccountName",
        "the Task's Job",
        "reconciler",
        "needs the Task and the ServiceAccount",
    ),
    Row(
        "spec.backupHistoryLimit < 0",
        "operator backup/history.py (read as 0)",
        "accepted",
        "runs: no finished session is kept, as a limit of 0 says",
    ),
    Row(
        "spec.retryConfig.maxRetry < 1",
        "operator backup/retry_policy.py (no retry)",
        "accepted",
        "runs: the failed session is not retried",
    ),
    Row(
        "spec.runtimeSettings.container.ionice.class / .classData",
        "agent restic/priority.py: the kernel's ioprio_set refuses EINVAL (PriorityRefused naming the field)",
        "schema",
        "the kernel has I/O classes 0-3 and levels 0-7 only; whether it allows the realtime class (or a "
        "negative nice adjustment) depends on the pod's capabilities, so that is left to the run",
        (
            bad(
                "spec.runtimeSettings.container.ionice.class",
                "BackupConfiguration",
                runtimeSettings={"container": {"ionice": {"class": 4}}},
            ),
            bad(
                "spec.runtimeSettings.container.ionice.classData",
                "RestoreSession",
                runtimeSettings={"container": {"ionice": {"class": 2, "classData": 8}}},
            ),
        ),
        ("BackupConfiguration", "spec.runtimeSettings.container.ionice.classData"),
        "the kernel has no other I/O",
    ),
    Row(
        "spec.runtimeSettings.container.nice.adjustment, .ionice.* (not whole numbers)",
        "agent restic/priority.py _number: 'must be a whole number'",
        "schema",
        "typed as in Stash's CRD (int32); the rest of the container settings stay free-form",
        (
            bad(
                "spec.runtimeSettings.container.nice.adjustment",
                "BackupConfiguration",
                runtimeSettings={"container": {"nice": {"adjustment": "low"}}},
            ),
        ),
        ("BackupConfiguration", "spec.runtimeSettings.container.nice.adjustment"),
        "must be of type integer",
    ),
    Row(
        "spec.hooks.*",
        "the agent's hooks (api/hooks.py: HookSpecError naming the field)",
        "reconciler",
        "prober.Handler is free-form in Stash's CRD (kept so); the operator parses the hooks with the "
        "agent's own parser (stashlet.api.hooks) and the object is Invalid naming the hook's field before "
        "it runs",
    ),
)
"""Every run-time refusal of a spec value and where stashlet refuses it (see the module docstring)."""

ACCEPTED: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "keepLast -1 (unlimited)",
        with_spec("BackupConfiguration", retentionPolicy={"name": "k", "keepLast": -1, "prune": False}),
    ),
    (
        "keepLast 0 beside keepDaily",
        with_spec(
            "BackupConfiguration",
            retentionPolicy={"name": "k", "keepLast": 0, "keepDaily": 7, "prune": False},
        ),
    ),
    (
        "keepTags alone",
        with_spec("BackupConfiguration", retentionPolicy={"name": "k", "keepTags": ["a,b"], "prune": False}),
    ),
    (
        "VolumeSnapshotter keeps all without a rule",
        with_spec(
            "BackupConfiguration",
            driver="VolumeSnapshotter",
            repository=None,
            retentionPolicy={"name": "k", "prune": False},
        ),
    ),
    ("timeOut 1h30m", with_spec("BackupConfiguration", timeOut="1h30m")),
    ("timeOut 1.5µs", with_spec("RestoreSession", timeOut="1.5µs")),
    (
        "delay 0s (retry at once)",
        with_spec("BackupConfiguration", retryConfig={"maxRetry": 1, "delay": "0s"}),
    ),
    ("delay 0", with_spec("BackupConfiguration", retryConfig={"delay": "0"})),
    ("backupHistoryLimit 0", with_spec("BackupConfiguration", backupHistoryLimit=0)),
    (
        "realtime I/O class, negative nice, other container settings",
        with_spec(
            "BackupConfiguration",
            runtimeSettings={
                "container": {
                    "nice": {"adjustment": -5},
                    "ionice": {"class": 1, "classData": 0},
                    "securityContext": {"runAsUser": 2000},
                    "anything": {"kept": True},
                }
            },
        ),
    ),
    (
        "local backend with subPath",
        with_spec(
            "Repository",
            backend={"storageSecretName": "s", "local": {"mountPath": "/r", "subPath": "a..b/c"}},
        ),
    ),
    (
        "blueprint with the docs' variables",
        with_spec(
            "BackupBlueprint", retentionPolicy={"name": "k", "keepDaily": -1, "keepLast": 3, "prune": False}
        ),
    ),
)
"""Edge values that run, so the API server takes them (the ``accepted`` side of the rules)."""

SCHEDULES: tuple[tuple[str, bool], ...] = (
    ("*/5 * * * *", True),
    ("0 3 * * *", True),
    ("@every 1h", True),
    ("@every 1h30m", True),
    ("@hourly", True),
    ("@annually", True),
    ("@midnight", True),
    ("0 0 1 jan *", True),
    ("0 0 * * MON-fri", True),
    ("0 0 * * sun,sat", True),
    ("5-10/2 * * * *", True),
    ("5/15 * * * *", True),
    ("*/61 * * * *", True),
    ("? * * * *", True),
    ("1,,2 * * * *", True),
    ("+5 * * * *", True),
    ("*-3 * * * *", True),
    ("0   3\t*  *  *", True),
    ("every minute", False),
    ("* * * *", False),
    ("* * * * * *", False),
    ("60 * * * *", False),
    ("* 24 * * *", False),
    ("* * 0 * *", False),
    ("* * 32 * *", False),
    ("* * * 13 *", False),
    ("* * * * 7", False),
    ("*/0 * * * *", False),
    ("5-3 * * * *", False),
    ("1-2-3 * * * *", False),
    ("*/2/2 * * * *", False),
    ("-1 * * * *", False),
    ("a * * * *", False),
    ("* * * january *", False),
    ("@every", False),
    ("@every 5", False),
    ("@every 1d", False),
    ("@daily ", False),
    ("@Daily", False),
    ("@reboot", False),
    ("CRON_TZ=UTC */5 * * * *", False),
    ("TZ=Europe/Paris 0 3 * * *", False),
)
"""Schedules and whether the CronJob controller takes them (the real API server agrees: see its test)."""


STASH_DOCS = Path(__file__).parent / "stash_docs"
"""Examples from Stash's documentation that hold the values the rules judge (timeOut, delay, keep*)."""


def stash_docs_examples() -> list[dict[str, Any]]:
    """The documentation's objects, as written."""
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(STASH_DOCS.glob("*.yaml"))]


def schema_node(kind: str, dotted: str) -> dict[str, Any]:
    """The generated schema node at a dotted path (``[]`` steps into array items)."""
    info = next(info for info in crdgen.CRDS if info.kind == kind)
    node: dict[str, Any] = crdgen.build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in dotted.split("."):
        node = node["items"] if name == "[]" else node["properties"][name]
    return node


SCHEMA_ROWS = [row for row in INVENTORY if row.door == "schema"]


def test_the_inventory_is_complete_and_each_row_has_its_proof() -> None:
    """Every row says who refuses at run time and why; schema rows carry bad objects, a rule and words."""
    assert len(INVENTORY) >= 15
    for row in INVENTORY:
        assert row.field and row.refused_at_run_time_by and row.why, row
        if row.door == "schema":
            assert row.bad and row.rule_at and row.message, row
        else:
            assert not row.bad, row


@pytest.mark.parametrize("row", SCHEMA_ROWS, ids=[row.field for row in SCHEMA_ROWS])
def test_each_schema_row_has_its_rule_in_the_crd(row: Row) -> None:
    """The CRD holds the rule (or required field) the row relies on, with the row's words."""
    assert row.rule_at is not None
    node = schema_node(*row.rule_at)
    texts = [rule["message"] for rule in node.get("x-kubernetes-validations", [])]
    if row.message == "Required value":
        assert node["required"], node
    elif row.message == "must be of type integer":
        assert node["type"] == "integer", node
    else:
        assert any(row.message in text for text in texts), texts


@pytest.mark.parametrize("kind", ["BackupConfiguration", "BackupBlueprint"])
def test_every_keep_count_has_the_rule(kind: str) -> None:
    """keepLast ... keepYearly all refuse counts below -1, in the configuration and the blueprint."""
    for count in ("keepLast", "keepHourly", "keepDaily", "keepWeekly", "keepMonthly", "keepYearly"):
        [rule] = schema_node(kind, f"spec.retentionPolicy.{count}")["x-kubernetes-validations"]
        assert rule["rule"] == "self >= -1"


def test_every_cel_rule_on_a_string_has_a_max_length() -> None:
    """A CEL rule that reads a string needs a bounded string (the API server's cost budget)."""
    for info in crdgen.CRDS:
        root = crdgen.build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        stack = [root]
        while stack:
            node = stack.pop()
            if node.get("type") == "string" and "x-kubernetes-validations" in node:
                assert "maxLength" in node, node
            stack += list(node.get("properties", {}).values())
            stack += [node["items"]] if "items" in node else []


def test_a_volume_snapshotter_policy_needs_no_rule() -> None:
    """Without a rule the VolumeSnapshotter driver removes nothing (Stash's rule); restic needs one."""
    empty = RetentionPolicy(name="k", prune=False)
    assert retention_problems(empty, needs_rule=False) == []
    assert retention_problems(empty) == [f"spec.retentionPolicy: {KEEPS_NOTHING_MESSAGE}"]


@pytest.mark.parametrize(("schedule", "accepted"), SCHEDULES)
def test_schedules_are_judged_as_the_cronjob_controller_judges_them(schedule: str, accepted: bool) -> None:
    """api/schedules.py takes what robfig/cron's ParseStandard takes and refuses TZ, naming the field."""
    problem = schedule_problem(schedule)
    assert (problem is None) == accepted, problem
    if problem is not None:
        assert problem.startswith(f"spec.schedule: {schedule!r} is not a schedule the CronJob controller")


def test_an_empty_schedule_is_no_schedule() -> None:
    """No schedule: no CronJob, sessions on demand; nothing to refuse."""
    assert schedule_problem(None) is None
    assert schedule_problem("") is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400.0),
        ("0", 0.0),
        ("+5m", 300.0),
        ("-5m", -300.0),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("1.5µs", 1.5e-6),
    ],
)
def test_go_durations_are_read_as_go_reads_them(text: str, seconds: float) -> None:
    """Go's time.ParseDuration syntax: signs, fractions, the micro sign."""
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["12", "1h 30m", "1d", ".s", "", "5m\n", "99999999999h"])
def test_what_go_refuses_is_no_duration(text: str) -> None:
    """No unit, a space, an unknown unit, a trailing newline, more than Go's longest: ValueError."""
    with pytest.raises(ValueError, match="not a Go duration"):
        parse_go_duration(text)


def test_duration_problems_name_the_field() -> None:
    """A timeOut must be above 0s; a delay may be 0s; neither may be negative."""
    assert (
        go_duration_problem("spec.timeOut", "0s", positive=True)
        == "spec.timeOut: '0s' must be longer than 0s"
    )
    assert go_duration_problem("spec.retryConfig.delay", "0s", positive=False) is None
    assert go_duration_problem("spec.retryConfig.delay", "-1s", positive=False) == (
        "spec.retryConfig.delay: '-1s' must be 0s or longer"
    )
    assert go_duration_problem("spec.timeOut", None, positive=True) is None


@pytest.mark.parametrize("obj", stash_docs_examples(), ids=lambda obj: obj["kind"])
def test_the_stash_docs_examples_pass_the_schema(
    obj: dict[str, Any], crd_errors: Callable[[dict[str, Any]], list[str]]
) -> None:
    """The documentation's BackupConfiguration and RestoreSession (timeOut 2h and 30m, delay 10m) fit the
    generated schema; the real API server takes them too (tests/api/test_refusals_apiserver.py)."""
    assert crd_errors(obj) == []
