"""Found objects -> the validation conditions, phase and applicability of a BackupConfiguration (pure)."""

from typing import Any

import pytest
from tests.api.test_refusals import ACCEPTED, stash_docs_examples, with_spec

from stashlet.api.backupconfiguration import BackupConfiguration, BackupInvokerPhase
from stashlet.api.common import ConditionStatus
from stashlet.api.conditions import ConditionType
from stashlet.api.repository import Repository
from stashlet.operator.backup.status import compute_phase
from stashlet.operator.backup.validation import Model, Verdict, validate, value_problems
from stashlet.operator.core.conditions import ConditionUpdate, apply_conditions
from stashlet.operator.core.validation import Lookup, Observed

SEED_KEYS = frozenset({"RESTIC_PASSWORD", "GOOGLE_PROJECT_ID", "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"})


def observed(
    repo: Repository | None,
    workload: dict[str, Any] | None,
    keys: frozenset[str] | None = SEED_KEYS,
    labels: dict[str, str] | None = None,
) -> Observed:
    return Observed(Lookup(repo), Lookup(keys), Lookup(workload), labels)


def by_type(verdict: Verdict) -> dict[str, ConditionUpdate]:
    return {u.type.value: u for u in verdict.updates}


def phase(verdict: Verdict, *extra: ConditionUpdate) -> BackupInvokerPhase:
    import datetime as dt

    conditions = apply_conditions([], [*verdict.updates, *extra], now=dt.datetime.now(dt.UTC), generation=1)
    return compute_phase(conditions, sidecar=verdict.model == Model.SIDECAR)


def test_seed_003_is_valid_and_applicable(bc: BackupConfiguration, repo: Repository, make: Any) -> None:
    """The seed's objects, all present: every validation condition True, and the configuration applies."""
    verdict = validate(bc, observed(repo, make.deployment()))
    conditions = by_type(verdict)
    assert verdict.applicable
    assert verdict.model == Model.SIDECAR
    for type_ in ("RepositoryFound", "BackendSecretFound", "BackupTargetFound", "ValidationPassed"):
        assert conditions[type_].status == ConditionStatus.TRUE, conditions[type_]
    assert conditions["BackupTargetFound"].message == "Backup target apps/v1 deployment/stash-demo found."
    # Ready needs the CronJob and the sidecar too.
    assert phase(verdict) == BackupInvokerPhase.NOT_READY
    cron = ConditionUpdate(ConditionType.CRON_JOB_CREATED, ConditionStatus.TRUE, "CronJobCreationSucceeded")
    sidecar = ConditionUpdate(
        ConditionType.STASH_SIDECAR_INJECTED, ConditionStatus.TRUE, "SidecarInjectionSucceeded"
    )
    assert phase(verdict, cron, sidecar) == BackupInvokerPhase.READY


def test_missing_repository_is_not_ready_and_names_it(bc: BackupConfiguration, make: Any) -> None:
    """No Repository: RepositoryFound False (RepositoryNotAvailable) naming it and the field; NotReady."""
    verdict = validate(bc, observed(None, make.deployment()))
    found = by_type(verdict)["RepositoryFound"]
    assert (found.status, found.reason) == (ConditionStatus.FALSE, "RepositoryNotAvailable")
    assert "Repository demo/gcs-repo does not exist" in found.message
    assert "spec.repository of BackupConfiguration demo/pause-backup" in found.message
    assert by_type(verdict)["BackendSecretFound"].status == ConditionStatus.UNKNOWN
    assert not verdict.applicable
    assert phase(verdict) == BackupInvokerPhase.NOT_READY


def test_repository_in_another_namespace_refused_by_its_usage_policy_is_invalid(make: Any) -> None:
    """A Repository whose usagePolicy does not admit the namespace: ValidationPassed False; Invalid."""
    bc = BackupConfiguration.from_dict(
        make.backup_configuration(repository={"name": "gcs-repo", "namespace": "backup"})
    )
    repo = Repository.from_dict(
        make.repository(namespace="backup", usagePolicy={"allowedNamespaces": {"from": "Same"}})
    )
    verdict = validate(bc, observed(repo, make.deployment(), labels={}))
    conditions = by_type(verdict)
    assert conditions["RepositoryFound"].status == ConditionStatus.TRUE
    assert conditions["ValidationPassed"].status == ConditionStatus.FALSE
    assert conditions["ValidationPassed"].reason == "ResourceValidationFailed"
    assert "spec.repository" in conditions["ValidationPassed"].message
    assert "usagePolicy" in conditions["ValidationPassed"].message
    assert conditions["BackendSecretFound"].status is None  # not this namespace's business
    assert not verdict.applicable
    assert phase(verdict) == BackupInvokerPhase.INVALID


def test_repository_admitted_by_selector_is_valid(make: Any) -> None:
    """The same Repository with a Selector matching the namespace's labels is fine."""
    bc = BackupConfiguration.from_dict(
        make.backup_configuration(repository={"name": "gcs-repo", "namespace": "backup"})
    )
    policy = {"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"backup": "yes"}}}}
    repo = Repository.from_dict(make.repository(namespace="backup", usagePolicy=policy))
    assert validate(bc, observed(repo, make.deployment(), labels={"backup": "yes"})).applicable


def test_missing_secret_is_not_ready(bc: BackupConfiguration, repo: Repository, make: Any) -> None:
    """No storage Secret: BackendSecretFound False naming the Secret and the Repository's field."""
    verdict = validate(bc, observed(repo, make.deployment(), keys=None))
    found = by_type(verdict)["BackendSecretFound"]
    assert (found.status, found.reason) == (ConditionStatus.FALSE, "BackendSecretNotAvailable")
    assert "Backend Secret demo/gcs-secret does not exist" in found.message
    assert "spec.backend.storageSecretName of Repository demo/gcs-repo" in found.message
    assert not verdict.applicable
    assert phase(verdict) == BackupInvokerPhase.NOT_READY


def test_secret_without_restic_password_is_not_ready(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """A Secret lacking RESTIC_PASSWORD: BackendSecretFound False naming the key."""
    verdict = validate(bc, observed(repo, make.deployment(), keys=frozenset({"GOOGLE_PROJECT_ID"})))
    found = by_type(verdict)["BackendSecretFound"]
    assert found.status == ConditionStatus.FALSE
    assert "has no non-empty key RESTIC_PASSWORD" in found.message
    assert not verdict.applicable


def test_backend_specific_keys_are_checked(make: Any) -> None:
    """s3 needs both access keys or neither; b2 needs its two keys (the agent's rules)."""
    bc = BackupConfiguration.from_dict(make.backup_configuration())
    s3 = Repository.from_dict(
        {
            "metadata": {"name": "gcs-repo", "namespace": "demo"},
            "spec": {"backend": {"s3": {"endpoint": "e", "bucket": "b"}, "storageSecretName": "s"}},
        }
    )
    half = frozenset({"RESTIC_PASSWORD", "AWS_ACCESS_KEY_ID"})
    message = by_type(validate(bc, observed(s3, make.deployment(), keys=half)))["BackendSecretFound"].message
    assert "sets AWS_ACCESS_KEY_ID but has no AWS_SECRET_ACCESS_KEY" in message
    assert validate(bc, observed(s3, make.deployment(), keys=frozenset({"RESTIC_PASSWORD"}))).applicable
    b2 = Repository.from_dict(
        {
            "metadata": {"name": "gcs-repo", "namespace": "demo"},
            "spec": {"backend": {"b2": {"bucket": "b"}, "storageSecretName": "s"}},
        }
    )
    message = by_type(validate(bc, observed(b2, make.deployment(), keys=frozenset({"RESTIC_PASSWORD"}))))[
        "BackendSecretFound"
    ].message
    assert "B2_ACCOUNT_ID" in message
    assert "B2_ACCOUNT_KEY" in message


def test_unsupported_target_kind_is_invalid(make: Any, repo: Repository) -> None:
    """A target kind the sidecar cannot go into: ValidationPassed False naming spec.target.ref.kind."""
    bc = BackupConfiguration.from_dict(make.backup_configuration(kind="CronJob"))
    verdict = validate(bc, observed(repo, None))
    conditions = by_type(verdict)
    assert conditions["ValidationPassed"].status == ConditionStatus.FALSE
    assert "spec.target.ref.kind: CronJob is not supported" in conditions["ValidationPassed"].message
    assert conditions["BackupTargetFound"].status is None
    assert phase(verdict) == BackupInvokerPhase.INVALID


def test_missing_target_is_not_ready(bc: BackupConfiguration, repo: Repository) -> None:
    """No such workload: BackupTargetFound False (TargetNotAvailable) naming it; NotReady."""
    verdict = validate(bc, observed(repo, None))
    found = by_type(verdict)["BackupTargetFound"]
    assert (found.status, found.reason) == (ConditionStatus.FALSE, "TargetNotAvailable")
    assert "Backup target apps/v1 deployment/stash-demo does not exist" in found.message
    assert not verdict.applicable
    assert phase(verdict) == BackupInvokerPhase.NOT_READY


def test_volume_mount_naming_no_volume_of_the_pod_is_invalid(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """``target.volumeMounts[0].name`` not a volume of the pod: ValidationPassed False naming the field."""
    verdict = validate(bc, observed(repo, make.deployment(volumes=("other",))))
    message = by_type(verdict)["ValidationPassed"].message
    assert (
        "spec.target.volumeMounts[0].name: Deployment demo/stash-demo has no volume 'source-data'" in message
    )
    assert "its volumes: other" in message
    assert phase(verdict) == BackupInvokerPhase.INVALID


def test_statefulset_claim_templates_count_as_volumes(make: Any, repo: Repository) -> None:
    """A StatefulSet's volumeClaimTemplates may be mounted by the sidecar."""
    bc = BackupConfiguration.from_dict(make.backup_configuration(kind="StatefulSet"))
    sts = make.deployment(volumes=())
    sts["kind"] = "StatefulSet"
    sts["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "source-data"}, "spec": {}}]
    assert validate(bc, observed(repo, sts)).applicable


def test_a_workload_injected_for_another_configuration_is_refused(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """One workload, one configuration: another configuration's sidecar makes this one invalid."""
    workload = make.deployment()
    workload["spec"]["template"]["metadata"]["annotations"] = {
        "stash.appscode.com/last-applied-invoker": "BackupConfiguration/other"
    }
    message = by_type(validate(bc, observed(repo, workload)))["ValidationPassed"].message
    assert "already backed up by BackupConfiguration/other" in message


def test_a_task_configuration_needs_no_target(make: Any, repo: Repository) -> None:
    """A configuration naming a Task (job model, e.g. the resource dump) is valid without a workload."""
    obj = make.backup_configuration(task={"name": "kubedump-backup-0.1.0"})
    del obj["spec"]["target"]
    bc = BackupConfiguration.from_dict(obj)
    verdict = validate(bc, observed(repo, None))
    assert verdict.model == Model.JOB
    assert verdict.applicable
    assert by_type(verdict)["BackupTargetFound"].status is None


def test_lookup_errors_make_conditions_unknown(bc: BackupConfiguration, make: Any) -> None:
    """A Repository that could not be read (e.g. forbidden): RepositoryFound Unknown with the reason."""
    verdict = validate(bc, Observed(Lookup(error="forbidden"), Lookup(), Lookup(make.deployment())))
    found = by_type(verdict)["RepositoryFound"]
    assert (found.status, found.reason) == (ConditionStatus.UNKNOWN, "UnableToCheckRepositoryAvailability")
    assert "forbidden" in found.message


def spec_of(obj: dict[str, Any]) -> BackupConfiguration:
    """A configuration parsed as the operator reads it (the models stay lenient)."""
    return BackupConfiguration.from_dict({**obj, "metadata": {"name": "bc", "namespace": "demo"}})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"retentionPolicy": {"name": "k", "keepLast": -5, "prune": True}},
            "spec.retentionPolicy.keepLast: -5",
        ),
        (
            {"retentionPolicy": {"name": "k", "keepWeekly": 0, "prune": False}},
            "spec.retentionPolicy: keeps no snapshot",
        ),
        (
            {"retentionPolicy": {"name": "k", "keepTags": ["a\nb"], "prune": False}},
            "spec.retentionPolicy.keepTags[0]",
        ),
        ({"timeOut": "0s"}, "spec.timeOut: '0s' must be longer than 0s"),
        ({"target": {"paths": ["/d", "d"]}}, "spec.target.paths[1]: 'd' must be an absolute path"),
        ({"timeOut": "30 minutes"}, "spec.timeOut: not a Go duration"),
        ({"schedule": "CRON_TZ=UTC 0 3 * * *"}, "spec.schedule: 'CRON_TZ=UTC 0 3 * * *' is not a schedule"),
    ],
)
def test_the_reconciler_names_a_value_stored_before_the_rules(changes: dict[str, Any], field: str) -> None:
    """An object stored before the CRD's rules (or past them) is Invalid with the field named, not Ready."""
    problems = value_problems(spec_of(with_spec("BackupConfiguration", **changes)))
    assert any(problem.startswith(field) for problem in problems), problems


def test_a_hook_that_is_no_handler_makes_the_configuration_invalid_naming_it(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """``spec.hooks`` is free-form in the CRD; a hook the agent could never run (two actions, no action, a
    port of the wrong shape) is named in ValidationPassed and nothing is applied."""
    for hooks, field in (
        ({"preBackup": {"exec": {"command": ["sync"]}, "httpGet": {"port": 80}}}, "spec.hooks.preBackup:"),
        ({"postBackup": {"containerName": "app"}}, "spec.hooks.postBackup:"),
        ({"preBackup": {"tcpSocket": {"port": [80]}}}, "spec.hooks.preBackup.tcpSocket.port:"),
    ):
        spec = {**bc.to_dict()["spec"], "hooks": hooks}
        verdict = validate(
            BackupConfiguration.from_dict({**bc.to_dict(), "spec": spec}), observed(repo, make.deployment())
        )
        passed = by_type(verdict)[ConditionType.VALIDATION_PASSED]
        assert not verdict.applicable
        assert passed.status == ConditionStatus.FALSE and field in passed.message, passed.message
    fine = {"preBackup": {"httpGet": {"port": 8080, "path": "/quiesce"}}}
    spec = {**bc.to_dict()["spec"], "hooks": fine}
    assert validate(
        BackupConfiguration.from_dict({**bc.to_dict(), "spec": spec}), observed(repo, make.deployment())
    ).applicable


@pytest.mark.parametrize(("name", "obj"), [a for a in ACCEPTED if a[1]["kind"] == "BackupConfiguration"])
def test_the_reconciler_passes_the_accepted_edges(name: str, obj: dict[str, Any]) -> None:
    """The edge values the API server takes are no problem to the reconciler either."""
    assert value_problems(spec_of(obj)) == [], name


def test_a_schedule_the_cronjob_controller_refuses_is_invalid_before_anything_is_made(
    bc: BackupConfiguration, repo: Repository, make: Any
) -> None:
    """A bad spec.schedule: ValidationPassed False naming the field, not applicable (no CronJob, RBAC or
    sidecar), phase Invalid."""
    bc.spec.schedule = "*/5 * * *"
    verdict = validate(bc, observed(repo, make.deployment()))
    passed = by_type(verdict)["ValidationPassed"]
    assert passed.status == ConditionStatus.FALSE
    assert passed.message.startswith("spec.schedule: '*/5 * * *' is not a schedule the CronJob controller")
    assert "expected exactly 5 fields" in passed.message
    assert not verdict.applicable
    assert phase(verdict) == BackupInvokerPhase.INVALID


def test_the_stash_docs_configuration_has_no_value_problem() -> None:
    """The documentation's BackupConfiguration (schedule, timeOut 2h, delay 10m, keepLast 5) runs."""
    [doc] = [obj for obj in stash_docs_examples() if obj["kind"] == "BackupConfiguration"]
    assert value_problems(BackupConfiguration.from_dict(doc)) == []
