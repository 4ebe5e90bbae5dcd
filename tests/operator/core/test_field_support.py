"""Every field the five CRDs accept is carried out (and a test shows it) or refused by name: table-driven.

The schema side comes from the CRDs themselves (``stashlet.api.crdgen``); the table is
:data:`stashlet.operator.core.field_support.FIELDS`; :data:`PROOFS` names, for every supported field, the
tests that show stashlet doing what Stash documents for it. A refused field is proven by setting it on
an otherwise valid object and reading the ``ValidationPassed`` condition the operator would write.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.operator import conftest as factories

from stashlet.api import names
from stashlet.api.backupblueprint import BackupBlueprint
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.backupsession import BackupSession
from stashlet.api.common import ConditionStatus
from stashlet.api.conditions import ConditionType
from stashlet.api.crdgen import CRDS, build_crd
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.operator.autobackup import resolution
from stashlet.operator.autobackup.resolution import AutoBackupError
from stashlet.operator.backup import validation as backup_validation
from stashlet.operator.core import field_support
from stashlet.operator.core.field_support import FIELDS, Runner, Supported, Unsupported
from stashlet.operator.core.validation import Lookup, Observed
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection import init_container, sidecar_container
from stashlet.operator.restore import restore_job
from stashlet.operator.restore import validation as restore_validation
from stashlet.operator.restore.validation import RestoreObserved
from stashlet.operator.settings import OperatorSettings
from stashlet.operator.taskjobs import backup_job

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = OperatorSettings(agent_image="agent:1", pushgateway_url="http://pgw:9091", status_port=4000)
KEYS = frozenset({"RESTIC_PASSWORD", "GOOGLE_PROJECT_ID", "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"})
KUBEDUMP_TASK = "kubedump-backup-0.1.0"

# ---------------------------------------------------------------- the tests that prove each supported field

_RETENTION = ("tests/agent/restic/test_retention.py::test_every_keep_option_in_order",)
_RETENTION_RUN = ("tests/agent/backup/test_sidecar.py::test_retention_keeps_exactly_what_the_policy_says",)
_BACKUP = ("tests/agent/backup/test_sidecar.py::test_deployment_backup_succeeds_and_matches_restic",)
_BC_VALID = ("tests/operator/backup/test_validation.py::test_seed_003_is_valid_and_applicable",)
_RS_VALID = ("tests/operator/restore/test_restore_builders.py::test_seed_004_is_valid_and_pending",)
_KIND = ("tests/operator/backup/test_validation.py::test_unsupported_target_kind_is_invalid",)
_ELSEWHERE = (
    "tests/operator/backup/test_validation.py::"
    "test_repository_in_another_namespace_refused_by_its_usage_policy_is_invalid",
)
_TMP = (
    "tests/operator/injection/test_inject.py::test_target_mounts_are_read_only_and_tmp_dir_is_an_empty_dir",
)
_CLAIM_TASKS = (
    "tests/operator/taskjobs/test_pvc_job.py::test_stash_guides_pvc_configuration_is_valid_with_its_claim_found",
    "e2e/test_pvc_backup.py::test_the_guides_pvc_backup_runs_as_a_job_on_the_claims_node_and_snapshots_its_files",
    "tests/operator/restore/test_restore_jobs_cluster.py::test_pvc_restore_waits_for_its_claim_then_gets_its_job",
    "tests/agent/restore/test_restore_job.py::test_pvc_restore_puts_the_claims_data_back_as_host_0",
    "tests/operator/autobackup/test_pvc_autobackup_cluster.py::"
    "test_an_annotated_claim_gets_a_ready_pvc_backup_configuration_and_loses_it_with_the_annotation",
)
_KUBEDUMP = (
    "tests/operator/backup/test_validation.py::test_a_task_configuration_needs_no_target",
    "e2e/test_seed_002_kubedump.py::"
    "test_seed_002_each_session_runs_as_a_job_for_namespace_application_and_cluster_scope",
)
_RUNTIME = (
    "tests/operator/core/test_field_support.py::test_each_runners_runtime_settings_reach_what_it_runs",
)
_RULES = (
    "tests/operator/restore/test_restore_builders.py::test_deprecated_spec_rules_are_checked_under_their_own_field",
)
_PATTERNS = (
    "tests/agent/restore/test_restore.py::test_rule_paths_include_and_exclude_select_what_comes_back",
)
_INVOKER = ("tests/operator/backup/test_builders.py::test_trigger_session_name_labels_owner_and_invoker",)
_SECRET = ("tests/operator/backup/test_validation.py::test_missing_secret_is_not_ready",)
_USAGE = (
    "tests/operator/core/test_usage_policy.py::test_from_selector_admits_namespaces_whose_labels_match",
    "tests/operator/core/test_usage_policy.py::test_match_expressions_follow_label_selector_semantics",
)
_BACKEND = "tests/agent/restic/test_backend.py::"
_PRIORITY = (
    "tests/agent/restic/test_priority.py::test_priorities_from_stash_fields",
    "tests/agent/restic/test_priority.py::test_restic_runs_with_the_configured_priorities_and_without_cache",
    "tests/agent/restic/test_priority.py::test_a_priority_the_kernel_refuses_fails_naming_the_field",
)
_HOOK_HANDLERS = (
    "tests/agent/hooks/test_exec_cluster.py::test_exec_runs_in_the_container_only_with_the_granted_right",
    "tests/agent/hooks/test_probes.py::test_http_post_sends_the_rendered_body_with_the_session_phase_and_error",
    "tests/agent/hooks/test_probes.py::test_tcp_socket_succeeds_on_a_listening_port_and_fails_on_a_closed_one",
)
_BACKUP_HOOKS = (
    "tests/agent/backup/test_backup_hooks.py::test_pre_backup_runs_before_restic_and_post_backup_after_it",
    "tests/agent/backup/test_backup_hooks.py::"
    "test_a_failing_pre_backup_takes_no_snapshot_and_an_on_failure_post_backup_reports_it",
    *_HOOK_HANDLERS,
)
_RESTORE_HOOKS = (
    "tests/agent/hooks/test_restore_hooks.py::test_pre_restore_runs_before_restic_and_post_restore_after_it",
    "tests/agent/hooks/test_restore_hooks.py::"
    "test_a_failing_pre_restore_restores_nothing_and_an_on_failure_post_restore_reports_it",
    *_HOOK_HANDLERS,
)
_SNAPSHOTTER = (
    "tests/operator/volumesnapshot/test_volumesnapshot_cluster.py::"
    "test_a_deployments_claim_is_snapshotted_per_session_kept_by_keep_last_and_restored",
    "tests/operator/volumesnapshot/test_volumesnapshot_cluster.py::"
    "test_a_missing_class_or_claim_fails_the_session_naming_the_field",
    "tests/operator/volumesnapshot/test_volumesnapshot_cluster.py::"
    "test_a_statefulsets_and_a_claims_volumes_are_snapshotted_and_restored_per_ordinal",
    "tests/operator/volumesnapshot/test_builders.py::"
    "test_the_guides_configurations_are_valid_and_run_as_the_volume_snapshotter",
)
_RETRY = ("tests/operator/backup/test_retry.py::test_a_failed_session_is_retried_until_no_retries_are_left",)


def _rules(prefix: str) -> dict[str, tuple[str, ...]]:
    return {
        f"{prefix}rules": _RULES,
        f"{prefix}rules[].sourceHost": (
            "tests/agent/restore/test_restore.py::test_restore_into_another_workload_takes_the_source_hosts_data",
        ),
        f"{prefix}rules[].targetHosts": (
            "tests/agent/restore/test_restore_plan.py::"
            "test_a_rule_naming_the_host_wins_over_the_catch_all_in_any_order",
        ),
        f"{prefix}rules[].snapshots": (
            "tests/agent/restore/test_restore_plan.py::"
            "test_latest_in_snapshots_is_the_latest_and_paths_are_normalised",
        ),
        f"{prefix}rules[].paths": _PATTERNS,
        f"{prefix}rules[].include": _PATTERNS,
        f"{prefix}rules[].exclude": _PATTERNS,
    }


PROOFS: dict[str, tuple[str, ...]] = {
    # what and when
    "spec.schedule": (
        "tests/operator/backup/test_builders.py::test_cronjob_runs_the_trigger_as_its_service_account",
    ),
    "spec.paused": (
        "tests/agent/backup/test_sidecar.py::test_paused_configuration_skips_with_the_seed_event",
    ),
    "spec.driver": (*_BC_VALID, *_RS_VALID, *_SNAPSHOTTER),
    "spec.target.snapshotClassName": _SNAPSHOTTER,
    "spec.timeOut": ("tests/agent/test_job.py::test_time_out_fails_the_session_with_deadline_exceeded",),
    "spec.backupHistoryLimit": (
        "tests/operator/backup/test_reconcile_cluster.py::test_backup_history_limit_prunes_old_finished_sessions",
    ),
    "spec.task": (*_KUBEDUMP, *_CLAIM_TASKS),
    "spec.task.name": (*_KUBEDUMP, *_CLAIM_TASKS),
    "spec.task.params": _KUBEDUMP,
    "spec.task.params[].name": _KUBEDUMP,
    "spec.task.params[].value": _KUBEDUMP,
    # where
    "spec.repository": _BC_VALID + _RS_VALID,
    "spec.repository.name": _BC_VALID + _RS_VALID,
    "spec.repository.namespace": _ELSEWHERE,
    # the target
    "spec.target": _BC_VALID + _RS_VALID,
    "spec.target.ref": _BC_VALID + _RS_VALID,
    "spec.target.ref.apiVersion": _KIND,
    "spec.target.ref.kind": _KIND,
    "spec.target.ref.name": _BC_VALID,
    "spec.target.ref.namespace": (
        "tests/operator/restore/test_restore_builders.py::test_what_the_init_container_model_cannot_do_is_invalid_and_named",
    ),
    "spec.target.volumeMounts": (
        *_TMP,
        "tests/operator/backup/test_validation.py::test_volume_mount_naming_no_volume_of_the_pod_is_invalid",
    ),
    "spec.target.paths": _BACKUP,
    "spec.target.exclude": _BACKUP,
    "spec.target.args": (
        *_BACKUP,
        "tests/agent/restore/test_restore_plan.py::test_restic_args_that_would_lie_or_escape_are_refused",
    ),
    "spec.target.replicas": (
        "tests/agent/backup/test_sidecar.py::test_statefulset_hosts_each_back_up_once",
        "tests/agent/restore/test_restore.py::test_deployment_replicas_restore_host_0_once",
    ),
    **_rules("spec."),
    **_rules("spec.target."),
    # what to keep
    "spec.retentionPolicy": _RETENTION_RUN,
    "spec.retentionPolicy.name": _RETENTION_RUN,
    "spec.retentionPolicy.prune": ("tests/agent/restic/test_retention.py::test_filters_prune_and_dry_run",),
    "spec.retentionPolicy.dryRun": (
        "tests/agent/restic/test_retention.py::test_filters_prune_and_dry_run",
        "tests/agent/restic/test_restic_cli.py::test_forget_dry_run_removes_nothing",
    ),
    **{
        f"spec.retentionPolicy.{keep}": _RETENTION
        for keep in (
            "keepLast",
            "keepHourly",
            "keepDaily",
            "keepWeekly",
            "keepMonthly",
            "keepYearly",
            "keepTags",
        )
    },
    # how the agent runs
    "spec.tempDir": _TMP,
    "spec.tempDir.medium": _TMP,
    "spec.tempDir.sizeLimit": _TMP,
    # the Repository
    "spec.backend": _SECRET,
    "spec.backend.storageSecretName": _SECRET,
    "spec.backend.s3": (
        _BACKEND + "test_s3_credentials_region_and_tls_options",
        _BACKEND + "test_s3_locations",
    ),
    "spec.backend.gcs": (_BACKEND + "test_gcs_writes_the_key_file",),
    "spec.backend.azure": (_BACKEND + "test_azure_account_from_secret_or_spec",),
    "spec.backend.b2": (
        _BACKEND + "test_b2_needs_both_keys",
        _BACKEND + "test_max_connections_becomes_an_extended_option",
    ),
    "spec.backend.swift": (_BACKEND + "test_swift_copies_the_keystone_keys_present",),
    "spec.backend.rest": (_BACKEND + "test_rest_credentials_go_in_the_environment",),
    "spec.backend.local": (
        _BACKEND + "test_local_directory_from_mount_and_sub_path",
        "tests/operator/injection/test_inject.py::test_local_backend_volume_is_mounted_at_its_mount_path",
    ),
    "spec.usagePolicy": _ELSEWHERE,
    "spec.usagePolicy.allowedNamespaces": _ELSEWHERE,
    "spec.usagePolicy.allowedNamespaces.from": _ELSEWHERE + _USAGE,
    "spec.usagePolicy.allowedNamespaces.selector": _USAGE,
    # the agent's own work
    "spec.target.alias": (
        "tests/agent/test_hosts.py::test_identify_every_workload_kind",
        "tests/agent/test_hosts.py::test_the_invokers_alias_names_the_agents_host",
        "tests/agent/backup/test_retention_scope.py::test_configurations_sharing_a_repository_keep_each_others_snapshots",
        "tests/agent/backup/test_shared_repository.py::"
        "test_two_configurations_sharing_a_repository_keep_each_others_snapshots",
    ),
    "spec.runtimeSettings.container.nice": _PRIORITY,
    "spec.runtimeSettings.container.ionice": _PRIORITY,
    "spec.tempDir.disableCaching": (
        "tests/agent/restic/test_priority.py::test_restic_runs_with_the_configured_priorities_and_without_cache",
        "tests/agent/restic/test_priority.py::test_restic_settings_follow_the_invokers_spec",
    ),
    "spec.wipeOut": (
        "e2e/test_wipe_out.py::test_wipe_out_waits_for_the_users_then_removes_the_backend_data",
        "e2e/test_wipe_out.py::test_a_wipe_that_fails_keeps_the_repository_and_says_why",
        "tests/agent/test_wipe.py::test_every_snapshot_of_every_host_is_forgotten_and_its_data_pruned",
        "tests/operator/repository/test_wipe_job.py::test_users_are_what_names_the_repository_in_its_namespace_or_from_another",
    ),
    "spec.runtimeSettings.pod.serviceAccountName": (
        "tests/operator/taskjobs/test_kubedump_account.py::"
        "test_the_account_the_configuration_names_runs_the_jobs_and_gets_only_their_own_work",
        "e2e/test_seed_002_kubedump.py::"
        "test_seed_002_each_session_runs_as_a_job_for_namespace_application_and_cluster_scope",
    ),
    # hooks
    "spec.hooks": (*_BACKUP_HOOKS, *_RESTORE_HOOKS),
    "spec.hooks.preBackup": _BACKUP_HOOKS,
    "spec.hooks.postBackup": _BACKUP_HOOKS,
    "spec.hooks.preRestore": _RESTORE_HOOKS,
    "spec.hooks.postRestore": _RESTORE_HOOKS,
    # retries
    "spec.retryConfig": _RETRY,
    "spec.retryConfig.maxRetry": _RETRY,
    "spec.retryConfig.delay": (
        *_RETRY,
        "tests/operator/backup/test_retry.py::test_no_delay_means_at_once_and_a_bad_delay_names_the_field",
    ),
    "spec.retryLeft": (
        *_RETRY,
        "tests/operator/backup/test_retry.py::test_a_session_starts_with_max_retry_retries_left",
    ),
    # Jobs on claims
    "spec.target.volumeClaimTemplates": (
        "tests/operator/restore/test_restore_jobs_cluster.py::test_volume_claim_templates_make_each_ordinals_claims_and_job",
        "tests/operator/restore/test_restore_jobs_cluster.py::"
        "test_claim_templates_that_cannot_be_made_end_the_session_naming_them",
        "tests/agent/restore/test_restore_job.py::"
        "test_clone_jobs_each_restore_their_ordinals_host_into_their_own_claims",
    ),
    # the session
    "spec.invoker": _INVOKER,
    "spec.invoker.apiGroup": _INVOKER,
    "spec.invoker.kind": _INVOKER,
    "spec.invoker.name": _INVOKER,
    # the blueprint
    "spec.repoNamespace": (
        "tests/operator/autobackup/test_autobackup.py::test_without_repo_namespace_both_objects_go_next_to_the_workload",
    ),
    "spec.backupNamespace": (
        "tests/operator/autobackup/test_autobackup.py::test_blueprint_fields_the_sidecar_model_cannot_honour_are_errors",
    ),
}
"""For each supported field path (of whichever kind), the tests that show it carried out."""


def proof_of(path: str) -> tuple[str, ...]:
    """The proof of ``path``; a runtimeSettings field not named in :data:`PROOFS` is proven by this
    module's runtime test."""
    if path in PROOFS:
        return PROOFS[path]
    if path.startswith("spec.runtimeSettings"):
        return _RUNTIME
    return ()


# ---------------------------------------------------------------- the schemas


def schema_paths(schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every field path under ``schema`` (at ``path``), with its schema; a free-form object ends the walk."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    for key, child in (schema.get("properties") or {}).items():
        yield f"{path}.{key}", child
        yield from schema_paths(child, f"{path}.{key}")
    items = schema.get("items")
    if isinstance(items, Mapping):
        for key, child in (items.get("properties") or {}).items():
            yield f"{path}[].{key}", child
            yield from schema_paths(child, f"{path}[].{key}")


@functools.cache
def spec_schemas() -> dict[str, dict[str, Mapping[str, Any]]]:
    """Each kind's field paths under ``spec`` and their schemas, from the generated CRDs."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for info in CRDS:
        root = build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        out[info.kind] = dict(schema_paths(root["properties"]["spec"], "spec"))
    return out


def covering(kind: str, path: str) -> tuple[str, field_support.Support] | None:
    """The table's entry for ``path``, or for the nearest opaque supported field above it."""
    table = FIELDS[kind]
    if path in table:
        return path, table[path]
    parent = path
    while "." in parent:
        parent = parent.rsplit(".", 1)[0].removesuffix("[]")
        found = table.get(parent)
        if isinstance(found, Supported) and found.opaque:
            return parent, found
    return None


def under_free_form(kind: str, path: str) -> bool:
    """Whether ``path`` lies inside a free-form object of the schema (``runtimeSettings.container.nice``)."""
    schemas = spec_schemas()[kind]
    parent = path
    while "." in parent:
        parent = parent.rsplit(".", 1)[0]
        schema = schemas.get(parent) or schemas.get(parent.removesuffix("[]"))
        if schema is not None:
            item = schema.get("items") if parent.endswith("[]") else schema
            return bool(item and item.get("x-kubernetes-preserve-unknown-fields"))
    return False


@pytest.mark.parametrize("kind", list(FIELDS))
def test_every_schema_field_is_supported_or_refused(kind: str) -> None:
    """Walking the CRD's ``spec``: each field path has its entry in the table (or is inside an embedded
    Kubernetes type the table takes as written), and the table has no entry the schema lacks."""
    schema = spec_schemas()[kind]
    missing = [path for path in schema if covering(kind, path) is None]
    assert missing == [], f"{kind}: fields neither supported nor refused: {missing}"
    stale = [path for path in FIELDS[kind] if path not in schema and not under_free_form(kind, path)]
    assert stale == [], f"{kind}: table entries the schema does not have: {stale}"


def supported_paths() -> list[tuple[str, str]]:
    return [
        (kind, path)
        for kind, table in FIELDS.items()
        for path, s in table.items()
        if isinstance(s, Supported)
    ]


@functools.cache
def functions_in(file: str) -> frozenset[str]:
    tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
    return frozenset(
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )


@pytest.mark.parametrize(("kind", "path"), supported_paths())
def test_every_supported_field_names_the_tests_that_show_it(kind: str, path: str) -> None:
    """A supported field without a test showing it carried out would be a claim, not a fact."""
    proof = proof_of(path)
    assert proof, f"{kind} {path} is supported but no test is named for it"
    for test_id in proof:
        file, _, name = test_id.partition("::")
        assert (ROOT / file).is_file(), test_id
        assert name in functions_in(file), test_id


# ---------------------------------------------------------------- refused fields make the object invalid


def sample(schema: Mapping[str, Any] | None) -> Any:
    """A value of ``schema``'s type that asks for something (free-form: a made-up key)."""
    if schema is None or (
        schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties")
    ):
        return {"asked": "yes"}
    if schema.get("x-kubernetes-int-or-string"):
        return 1
    kind = schema.get("type")
    if kind == "string":
        return str((schema.get("enum") or ["x"])[-1])
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [sample(schema.get("items"))]
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)[:1]
    return {key: sample(properties.get(key)) for key in required}


def with_field(spec: dict[str, Any], kind: str, path: str) -> dict[str, Any]:
    """``spec`` with ``path`` (``spec.a[].b``) set to a sample of its type; list items and objects made on
    the way get their required siblings so the object still parses."""
    schemas = spec_schemas()[kind]
    spec = copy.deepcopy(spec)
    parts = path.split(".")[1:]
    node: Any = spec
    walked = "spec"
    for i, part in enumerate(parts):
        is_list = part.endswith("[]")
        key = part.removesuffix("[]")
        walked += f".{key}"
        last = i == len(parts) - 1
        if last:
            node[key] = sample(schemas.get(walked))
            break
        if is_list:
            items = (schemas.get(walked) or {}).get("items") or {}
            item = sample(items) if isinstance(items, Mapping) else {}
            node[key] = [item if isinstance(item, dict) else {}]
            node = node[key][0]
            walked += "[]"
        else:
            if key not in node:
                made = sample(schemas.get(walked))
                node[key] = made if isinstance(made, dict) else {}
            node = node[key]
    return spec


def backup_verdict(spec: dict[str, Any], repository: dict[str, Any] | None = None) -> tuple[bool, str]:
    obj = factories.backup_configuration()
    obj["spec"] = spec
    bc = BackupConfiguration.from_dict(obj)
    repo = Repository.from_dict(repository or factories.repository())
    verdict = backup_validation.validate(
        bc, Observed(Lookup(repo), Lookup(KEYS), Lookup(factories.deployment()))
    )
    passed = next(u for u in verdict.updates if u.type == ConditionType.VALIDATION_PASSED)
    return verdict.applicable, passed.message if passed.status == ConditionStatus.FALSE else ""


def restore_verdict(spec: dict[str, Any], repository: dict[str, Any] | None = None) -> tuple[bool, str]:
    rs = RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "deployment-restore", "namespace": "demo", "generation": 1},
            "spec": spec,
        }
    )
    repo = Repository.from_dict(repository or factories.repository())
    observed = RestoreObserved(Lookup(repo), Lookup(KEYS), Lookup(factories.deployment()))
    verdict = restore_validation.validate_restore(rs, observed)
    passed = next(u for u in verdict.updates if u.type == ConditionType.VALIDATION_PASSED)
    return verdict.applicable, passed.message if passed.status == ConditionStatus.FALSE else ""


SIDECAR_SPEC = factories.backup_configuration()["spec"]
JOB_SPEC = {
    "repository": {"name": "gcs-repo"},
    "schedule": "0 0 1 1 *",
    "task": {"name": KUBEDUMP_TASK},
    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
}
RESTORE_SPEC = {
    "repository": {"name": "gcs-repo"},
    "target": {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stash-demo"},
        "volumeMounts": [{"name": "source-data", "mountPath": "/source/data"}],
        "rules": [{"paths": ["/source/data"]}],
    },
}
CLAIM_SPEC = {
    "repository": {"name": "gcs-repo"},
    "schedule": "0 0 1 1 *",
    "task": {"name": "pvc-backup"},
    "target": {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}},
    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
}
RESTORE_JOB_SPEC = {
    "repository": {"name": "gcs-repo"},
    "task": {"name": "pvc-restore"},
    "target": {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
        "rules": [{"snapshots": ["latest"]}],
    },
}

SNAPSHOT_BACKUP_SPEC = {
    "driver": "VolumeSnapshotter",
    "schedule": "0 0 1 1 *",
    "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stash-demo"}},
    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
}
SNAPSHOT_RESTORE_SPEC = {
    "driver": "VolumeSnapshotter",
    "target": {
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "restored-data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                    "dataSource": {
                        "kind": "VolumeSnapshot",
                        "apiGroup": "snapshot.storage.k8s.io",
                        "name": "source-data-1700000000",
                    },
                },
            }
        ]
    },
}


@dataclass(frozen=True)
class Base:
    """A valid object of one kind carried out by one runner, and how its verdict is read."""

    runner: Runner
    kind: str
    spec: dict[str, Any]
    verdict: Callable[..., tuple[bool, str]]


BASES = {
    "sidecar": Base(Runner.SIDECAR, names.KIND_BACKUP_CONFIGURATION, SIDECAR_SPEC, backup_verdict),
    "resource-dump job": Base(Runner.JOB, names.KIND_BACKUP_CONFIGURATION, JOB_SPEC, backup_verdict),
    "claim job": Base(Runner.CLAIM_JOB, names.KIND_BACKUP_CONFIGURATION, CLAIM_SPEC, backup_verdict),
    "init-container": Base(Runner.INIT_CONTAINER, names.KIND_RESTORE_SESSION, RESTORE_SPEC, restore_verdict),
    "restore job": Base(Runner.JOB, names.KIND_RESTORE_SESSION, RESTORE_JOB_SPEC, restore_verdict),
    "snapshotter backup": Base(
        Runner.VOLUME_SNAPSHOTTER, names.KIND_BACKUP_CONFIGURATION, SNAPSHOT_BACKUP_SPEC, backup_verdict
    ),
    "snapshotter restore": Base(
        Runner.VOLUME_SNAPSHOTTER, names.KIND_RESTORE_SESSION, SNAPSHOT_RESTORE_SPEC, restore_verdict
    ),
}
"""Every way an object is carried out."""


def test_the_bases_are_valid() -> None:
    """Each base object passes as it is, so a refusal below is the field's doing."""
    for name, base in BASES.items():
        assert base.verdict(base.spec) == (True, ""), name


RUNNER_PICKERS = frozenset({"spec.driver", "spec.task", "spec.task.name", "spec.target.volumeClaimTemplates"})
"""Fields whose presence decides how an object is carried out (the driver; a Task's name; claims to restore
into)."""


def refused_cases() -> Iterator[tuple[str, str]]:
    for name, base in BASES.items():
        for path, support in FIELDS[base.kind].items():
            if path in RUNNER_PICKERS:
                continue  # it picks the runner: a wrong one is refused by value, not as a field
            if isinstance(support, Unsupported) or (
                support.runners is not None and base.runner not in support.runners
            ):
                yield name, path


@pytest.mark.parametrize(("base", "path"), list(refused_cases()))
def test_a_refused_field_makes_the_object_invalid_naming_it(base: str, path: str) -> None:
    """Set on an otherwise valid object, a field stashlet does not carry out (for this runner) makes
    ``ValidationPassed`` False with a message that names the field, and nothing is applied."""
    found = BASES[base]
    applicable, message = found.verdict(with_field(found.spec, found.kind, path))
    assert not applicable
    assert names_refused(path, message), message


def names_refused(path: str, message: str) -> bool:
    """Whether ``message`` refuses ``path`` (its first item, ``[0]``), the sample set below it, or a field
    above it, by name."""
    shown = path.replace("[]", "[0]")
    while True:
        if re.search(rf"{re.escape(shown.removesuffix('[0]'))}(\[0\])?(\.\w+)*: [^;]*not supported", message):
            return True
        if "." not in shown:
            return False
        shown = shown.rsplit(".", 1)[0]


def test_a_repository_field_stashlet_refuses_makes_its_users_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Repository has no conditions of its own: what refers to it names its refused fields.

    Every Repository field is carried out today, so the table is given a refused one here.
    """
    monkeypatch.setitem(
        field_support.REPOSITORY_FIELDS, "spec.wipeOut", field_support.refused("for this test")
    )
    repo = factories.repository(wipeOut=True)
    for verdict, spec in ((backup_verdict, SIDECAR_SPEC), (restore_verdict, RESTORE_SPEC)):
        applicable, message = verdict(spec, repo)
        assert not applicable
        assert "Repository demo/gcs-repo spec.wipeOut: not supported by stashlet: for this test" in message


def test_an_empty_value_asks_for_nothing_and_passes() -> None:
    """An empty ``snapshotClassName`` asks for what stashlet does anyway."""
    target = {**SIDECAR_SPEC["target"], "snapshotClassName": ""}
    assert backup_verdict({**SIDECAR_SPEC, "target": target}) == (True, "")


def test_an_unknown_runtime_setting_is_refused_by_name() -> None:
    """A key of ``runtimeSettings.container`` stashlet does not know is refused, not dropped."""
    spec = {**SIDECAR_SPEC, "runtimeSettings": {"container": {"cpuBoost": "yes"}}}
    applicable, message = backup_verdict(spec)
    assert not applicable
    assert "spec.runtimeSettings.container.cpuBoost: not a field stashlet knows" in message


@pytest.mark.parametrize(
    "path", [p for p, s in field_support.BACKUP_BLUEPRINT.items() if isinstance(s, Unsupported)]
)
def test_a_blueprint_field_stashlet_refuses_is_refused_where_it_lands(path: str) -> None:
    """A blueprint has no status: a refused field is refused by auto-backup (an event on the workload),
    or on the BackupConfiguration or Repository the blueprint makes."""
    blueprint_spec = with_field(
        {
            "repoNamespace": "demo",
            "backend": {"gcs": {"bucket": "b", "prefix": "p"}, "storageSecretName": "gcs-secret"},
            "schedule": "0 0 1 1 *",
            "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
        },
        names.KIND_BACKUP_BLUEPRINT,
        path,
    )
    blueprint = BackupBlueprint.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupBlueprint",
            "metadata": {"name": "bp"},
            "spec": blueprint_spec,
        }
    )
    target = resolution.Target(
        kind=WORKLOAD_KINDS["Deployment"], namespace="demo", name="stash-demo", uid="u"
    )
    request = resolution.Request(
        blueprints=("bp",),
        paths=("/source/data",),
        volume_mounts=((("name", "source-data"), ("mountPath", "/source/data")),),
    )
    try:
        plan = resolution.build(blueprint, target, request)
    except AutoBackupError as refusal:
        applicable, message = False, str(refusal)
    else:
        repository = {**factories.repository(), "spec": plan.repository["spec"]}
        applicable, message = backup_verdict(plan.config["spec"], repository)
    assert not applicable
    assert names_refused(path, message), message


# ---------------------------------------------------------------- runtime settings reach what runs

CONTAINER_SAMPLES: dict[str, Any] = {
    "resources": {"limits": {"memory": "300Mi"}},
    "securityContext": {"runAsNonRoot": False, "readOnlyRootFilesystem": True},
    "envFrom": [{"configMapRef": {"name": "agent-extra"}}],
    "imagePullPolicy": "Always",
    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}},
    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 4000}, "periodSeconds": 7},
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 4000}, "periodSeconds": 9},
}
POD_SAMPLES: dict[str, Any] = {
    "nodeSelector": {"disk": "ssd"},
    "nodeName": "node-a",
    "affinity": {"nodeAffinity": {}},
    "tolerations": [{"key": "backup", "operator": "Exists"}],
    "securityContext": {"fsGroup": 2000},
    "imagePullSecrets": [{"name": "registry"}],
    "priorityClassName": "low",
    "priority": 10,
    "runtimeClassName": "runc",
    "schedulerName": "default-scheduler",
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
}


def session_of(bc_name: str) -> BackupSession:
    return BackupSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {"name": "s-1", "namespace": "demo", "uid": "u-1"},
            "spec": {"invoker": {"apiGroup": names.GROUP, "kind": "BackupConfiguration", "name": bc_name}},
        }
    )


def restore_session(spec: dict[str, Any]) -> RestoreSession:
    return RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "deployment-restore", "namespace": "demo", "uid": "u-2"},
            "spec": spec,
        }
    )


def built(base: str, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent container and (for a Job) pod spec ``base`` builds with these runtime settings."""
    repo = Repository.from_dict(factories.repository())
    found = BASES[base]
    spec = {**found.spec, "runtimeSettings": settings}
    if found.runner == Runner.SIDECAR:
        bc = BackupConfiguration.from_dict(factories.backup_configuration(runtimeSettings=settings))
        return sidecar_container.build_injection(bc, "Deployment", "stash-demo", repo, SETTINGS).container, {}
    if found.runner == Runner.INIT_CONTAINER:
        rs = restore_session(spec)
        return init_container.build_init_injection(
            rs, "Deployment", "stash-demo", repo, SETTINGS
        ).container, {}
    if found.kind == names.KIND_RESTORE_SESSION:
        job = restore_job.build_job(restore_session(spec), None, repo, SETTINGS)
    else:
        obj = factories.backup_configuration()
        obj["spec"] = spec
        job = backup_job.build_job(
            BackupConfiguration.from_dict(obj), session_of("pause-backup"), repo, SETTINGS
        )
    pod_spec = job["spec"]["template"]["spec"]
    return pod_spec["containers"][0], pod_spec


@pytest.mark.parametrize(
    "base", [name for name, b in BASES.items() if b.runner in field_support.AGENT_RUNNERS]
)
def test_each_runners_runtime_settings_reach_what_it_runs(base: str) -> None:
    """Each ``runtimeSettings`` key the table supports for a runner lands in the container (or the Job's
    pod) as given; ``env`` is added after the agent's own entries; the others are refused by name."""
    found = BASES[base]
    keys = field_support.container_fields(found.runner)
    container_settings: dict[str, Any] = {key: CONTAINER_SAMPLES[key] for key in keys}
    container_settings["env"] = [{"name": "EXTRA", "value": "1"}]
    pod_settings = dict(POD_SAMPLES) if found.runner in field_support.JOBS else {}
    settings = {"container": container_settings, **({"pod": pod_settings} if pod_settings else {})}
    container, pod = built(base, settings)
    for key in keys:
        if key == "securityContext":
            assert container[key].items() >= CONTAINER_SAMPLES[key].items()
        else:
            assert container[key] == CONTAINER_SAMPLES[key], key
    assert {"name": "EXTRA", "value": "1"} in container["env"]
    for key, value in pod_settings.items():
        assert pod[key] == value, key
    for key in set(CONTAINER_SAMPLES) - set(keys):
        problems = field_support.refusals(
            found.kind, {"runtimeSettings": {"container": {key: CONTAINER_SAMPLES[key]}}}, found.runner
        )
        assert problems and problems[0].startswith(f"spec.runtimeSettings.container.{key}: not supported"), (
            key
        )


# ---------------------------------------------------------------- the README says the same


def refused_roots() -> set[tuple[str, str]]:
    """(kind, path) of every refused field whose parent is not refused too."""
    roots: set[tuple[str, str]] = set()
    for kind, table in FIELDS.items():
        for path, support in table.items():
            parent = path.rsplit(".", 1)[0].removesuffix("[]")
            if isinstance(support, Unsupported) and not isinstance(table.get(parent), Unsupported):
                roots.add((kind, path))
    return roots


def test_the_readme_lists_exactly_the_refused_fields() -> None:
    """The README's list of refused fields is the table's, kind by kind."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- refused-fields:start -->")[1].split("<!-- refused-fields:end -->")[0]
    listed: set[tuple[str, str]] = set()
    for row in block.strip().splitlines()[2:]:  # after the header and its rule
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) == 3:
            for kind in cells[0].split(", "):
                listed.add((kind, cells[1].strip("`")))
    assert listed == refused_roots()
