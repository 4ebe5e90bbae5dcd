"""``stashlet-agent job`` end to end: the resource dump of a BackupSession, run as a process with a
service account's token (the read-only RBAC a backup Job gets), real restic into a local-backend
Repository, a real Pushgateway; then restored with plain restic and re-applied with kubectl. And the
stand-alone claim (task ``pvc-backup``): the files where the Job mounts the claim, backed up the same way
with the Job's own rights only."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.polling import wait_until

from stashlet.agent.job import exit_code
from stashlet.agent.kubedump.sanitize import sanitize
from stashlet.api.agent_contract import AgentInvocation
from stashlet.api.backupsession import BackupSessionPhase
from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account
from stashlet.localcluster.processes import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.restic, pytest.mark.usefixtures("api_discovery")]

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
PASSWORD = "not-a-real-password-7"
BC = "resources-backup"
SESSION_NUMBERS = itertools.count(int(time.time()))
"""Session names ``<configuration>-<number>`` as Stash's (a Unix time), one apart: never two alike, however
fast the tests make them."""
JOB_SA = "stash-backup-job"
READ_ALL = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]


def job_rules(bc: str, repository: str, secret: str) -> list[dict[str, Any]]:
    """What the Job's service account needs in the configuration's namespace (besides reading the target)."""
    stash = "stash.appscode.com"
    return [
        {
            "apiGroups": [stash],
            "resources": ["backupconfigurations"],
            "verbs": ["get"],
            "resourceNames": [bc],
        },
        {"apiGroups": [stash], "resources": ["backupsessions"], "verbs": ["get"]},
        {"apiGroups": [stash], "resources": ["backupsessions/status"], "verbs": ["get", "update", "patch"]},
        {
            "apiGroups": [stash],
            "resources": ["repositories"],
            "verbs": ["get"],
            "resourceNames": [repository],
        },
        {
            "apiGroups": [stash],
            "resources": ["repositories/status"],
            "verbs": ["get", "update", "patch"],
            "resourceNames": [repository],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [secret]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    ]


def role_and_binding(
    name: str, namespace: str, rules: list[dict[str, Any]], sa_namespace: str
) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": JOB_SA, "namespace": sa_namespace}],
        },
    ]


def app_objects(namespace: str) -> list[dict[str, Any]]:
    """What the application namespace holds: a ConfigMap, Secrets (one a ServiceAccount token), a
    Deployment, a Service, a Repository."""
    labels = {"app": "web"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bot", "namespace": namespace}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "bot-token",
                "namespace": namespace,
                "annotations": {"kubernetes.io/service-account.name": "bot"},
            },
            "type": "kubernetes.io/service-account-token",
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-config", "namespace": namespace, "labels": labels},
            "data": {"nginx.conf": "server {\n  listen 80;\n}\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "web-secret", "namespace": namespace},
            "data": {"password": base64.b64encode(b"s3cr3t").decode()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "busybox",
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sleep", "3600"],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 80}]},
        },
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "offsite", "namespace": namespace},
            "spec": {
                "backend": {"s3": {"endpoint": "s3.example.com", "bucket": "b"}, "storageSecretName": "x"}
            },
        },
    ]


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


@dataclass
class JobSetup:
    """A kubedump BackupConfiguration in ``home`` for namespace ``app``, its Repository and RBAC."""

    kubectl: Kubectl
    home: str
    app: str
    tmp: Path
    restic_binary: str
    pushgateway: str | None

    @property
    def backend(self) -> Path:
        return self.tmp / "backend"

    def apply(
        self,
        *,
        paused: bool = False,
        target: dict[str, Any] | None = None,
        time_out: str | None = None,
        task: dict[str, Any] | None = None,
        target_spec: dict[str, Any] | None = None,
    ) -> None:
        """The Secret, Repository, configuration (a kubedump one unless ``task`` says otherwise;
        ``target_spec`` adds to ``spec.target``) and the Job's RBAC."""
        self.backend.mkdir(exist_ok=True)
        ref = target or {"apiVersion": "v1", "kind": "Namespace", "name": self.app}
        task = task or {"name": "kubedump-backup-0.1.0", "params": [{"name": "sanitize", "value": "true"}]}
        objects = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "local-secret", "namespace": self.home},
                "data": {"RESTIC_PASSWORD": base64.b64encode(PASSWORD.encode()).decode()},
            },
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": "local-repo", "namespace": self.home},
                "spec": {
                    "backend": {
                        "local": {"mountPath": str(self.backend), "hostPath": {"path": str(self.backend)}},
                        "storageSecretName": "local-secret",
                    }
                },
            },
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": BC, "namespace": self.home},
                "spec": {
                    "schedule": "*/5 * * * *",
                    "paused": paused,
                    "task": task,
                    "target": {"ref": ref, **(target_spec or {})},
                    "repository": {"name": "local-repo"},
                    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                    **({"timeOut": time_out} if time_out else {}),
                },
            },
            *role_and_binding(
                "stash-backup-job", self.home, job_rules(BC, "local-repo", "local-secret"), self.home
            ),
        ]
        self.kubectl("create", "serviceaccount", JOB_SA, "-n", self.home, check=False)
        self.kubectl("apply", "-f", "-", input_obj=objects)
        if ref.get("name") == self.app:
            self.kubectl(
                "apply",
                "-f",
                "-",
                input_obj=role_and_binding("stash-dump-read", self.app, READ_ALL, self.home),
            )

    def session(self) -> str:
        name = f"{BC}-{next(SESSION_NUMBERS)}"
        self.kubectl(
            "apply",
            "-f",
            "-",
            input_obj={
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupSession",
                "metadata": {
                    "name": name,
                    "namespace": self.home,
                    "labels": {"stash.appscode.com/backup-configuration": BC},
                },
                "spec": {
                    "invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": BC}
                },
            },
        )
        return name

    def start_job(self, session: str, kubeconfig: Path) -> subprocess.Popen[str]:
        """``stashlet-agent job`` as the operator's Job runs it, with the Job's service account token."""
        tmp_dir = self.tmp / "job-tmp"
        tmp_dir.mkdir(exist_ok=True)
        invocation = AgentInvocation(
            mode="job",
            invoker_kind="BackupConfiguration",
            invoker_name=BC,
            target_kind="",
            target_name="",
            status_port=free_port(),
            tmp_dir=str(tmp_dir),
            pushgateway_url=self.pushgateway,
            backup_session=session,
            log_level="debug",
        )
        env = {
            "PATH": os.environ["PATH"],
            "NAMESPACE": self.home,
            "POD_NAME": f"{session}-job-x7k2p",
            "KUBECONFIG": str(kubeconfig),
            "STASHLET_RESTIC": self.restic_binary,
            "HOME": str(tmp_dir),
        }
        return subprocess.Popen(
            [sys.executable, "-m", "stashlet.agent.cli", *invocation.args()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run_job(self, session: str, kubeconfig: Path) -> tuple[int, str]:
        """Run the job to its end: exit status and output."""
        process = self.start_job(session, kubeconfig)
        try:
            output, _ = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
        return process.returncode, output

    @property
    def dump_dir(self) -> Path:
        return self.tmp / "job-tmp" / "kubedump"

    def restic(self, *args: str) -> str:
        env = {**os.environ, "RESTIC_REPOSITORY": str(self.backend), "RESTIC_PASSWORD": PASSWORD}
        done = subprocess.run(
            [self.restic_binary, "--no-cache", *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout


@pytest.fixture
def app_namespace(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[str]:
    """A second namespace holding the application whose resources are dumped (2 Pods made)."""
    name = f"app-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    try:
        wait_for_default_service_account(control_plane, name)
        kubectl("apply", "-f", "-", input_obj=app_objects(name))
        wait_until(
            lambda: len(get_json(kubectl, "pods", "-n", name)["items"]) == 2,
            what="2 pods of web",
            timeout=60,
            interval=0.3,
        )
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def setup(
    kubectl: Kubectl, namespace: str, app_namespace: str, tmp_path: Path, restic_binary: str, pushgateway: str
) -> JobSetup:
    return JobSetup(kubectl, namespace, app_namespace, tmp_path, restic_binary, pushgateway)


def pushed_samples(pushgateway: str, job: str) -> list[Any]:
    """The samples the Pushgateway holds for ``job``."""
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.labels.get("job") == job]


def session_obj(kubectl: Kubectl, setup: JobSetup, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = get_json(kubectl, "backupsession", name, "-n", setup.home)
    return obj


def conditions(session: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in session["status"].get("conditions", [])}


def events_of(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in get_json(kubectl, "events", "-n", namespace)["items"]
        if e["involvedObject"]["name"] == name
    ]


def test_job_dumps_a_namespace_and_backs_it_up_like_any_session(
    kubectl: Kubectl,
    setup: JobSetup,
    service_account_kubeconfig: Callable[[str, str], Path],
    pushgateway: str,
) -> None:
    """The Job ends its session Succeeded (exit 0) with host-0's stats; the restic snapshot, listed
    with plain restic, holds one sanitized YAML per object; the Repository status and the pushed
    metrics match; the dump folder (Secrets in clear) is gone afterwards."""
    setup.apply()
    session = setup.session()
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 0, logs[-4000:]
    assert PASSWORD not in logs

    status = session_obj(kubectl, setup, session)["status"]
    assert status["phase"] == "Succeeded"
    assert status["sessionDuration"]
    target = status["targets"][0]
    assert target["ref"] == {"apiVersion": "v1", "kind": "Namespace", "name": setup.app}
    assert (target["totalHosts"], target["phase"]) == (1, "Succeeded")
    host = target["stats"][0]
    assert (host["hostname"], host["phase"]) == ("host-0", "Succeeded")
    assert host["snapshots"][0]["path"] == str(setup.dump_dir)
    found = conditions(session_obj(kubectl, setup, session))
    assert found["ResourcesDumped"]["status"] == "True"
    assert found["ResourcesDumped"]["reason"] == "AllResourcesDumped"
    for kind in (
        "BackendRepositoryInitialized",
        "RetentionPolicyApplied",
        "RepositoryIntegrityVerified",
        "MetricsPushed",
    ):
        assert found[kind]["status"] == "True", found[kind]

    snapshots = json.loads(setup.restic("snapshots", "--json"))
    assert [(s["hostname"], s["paths"]) for s in snapshots] == [("host-0", [str(setup.dump_dir)])]
    listed = [json.loads(line) for line in setup.restic("ls", "latest", "--json").splitlines()]
    paths = {n["path"] for n in listed if n.get("struct_type") == "node" and n["type"] == "file"}
    base = f"{setup.dump_dir}/namespaces/{setup.app}"
    assert {
        f"{setup.dump_dir}/cluster/core/v1/Namespace/{setup.app}.yaml",
        f"{base}/core/v1/ConfigMap/web-config.yaml",
        f"{base}/core/v1/Secret/web-secret.yaml",
        f"{base}/apps/v1/Deployment/web.yaml",
        f"{base}/core/v1/Service/web.yaml",
        f"{base}/stash.appscode.com/v1alpha1/Repository/offsite.yaml",
    } <= paths
    assert sum("/core/v1/Pod/" in p for p in paths) == 2
    assert not any("/Event/" in p or "kube-root-ca.crt" in p for p in paths)
    dumped = yaml.safe_load(setup.restic("dump", "latest", f"{base}/apps/v1/Deployment/web.yaml"))
    assert "status" not in dumped
    assert "managedFields" not in dumped["metadata"]
    assert dumped["spec"]["replicas"] == 2
    assert not setup.dump_dir.exists()

    repo = get_json(kubectl, "repository", "local-repo", "-n", setup.home)["status"]
    assert (repo["snapshotCount"], repo["integrity"]) == (1, True)

    job = f"backupconfiguration-{setup.home}-{BC}"
    samples = pushed_samples(pushgateway, job)
    host_ok = [s for s in samples if s.name == "stash_backup_host_backup_success"]
    assert [
        (s.labels["hostname"], s.labels["target_kind"], s.labels["target_name"], s.value) for s in host_ok
    ] == [("host-0", "Namespace", setup.app, 1.0)]
    session_ok = [s for s in samples if s.name == "stash_appscode_com_backup_session_success"]
    assert [s.value for s in session_ok] == [1.0]
    count = [s for s in samples if s.name == "stash_repository_snapshot_count"]
    assert [s.value for s in count] == [1.0]

    again, _ = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert again == 0  # the session already ended: nothing is done twice
    assert len(json.loads(setup.restic("snapshots", "--json"))) == 1


def rewrite_namespace(source: Path, old: str, new: str, target: Path) -> list[Path]:
    """Copy the restored YAMLs of namespace ``old`` into ``target``, metadata.namespace set to ``new``."""
    written = []
    for path in sorted((source / "namespaces" / old).rglob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        obj["metadata"]["namespace"] = new
        out = target / path.relative_to(source / "namespaces" / old)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(obj, sort_keys=False))
        written.append(out)
    return written


def test_restored_dump_reapplies_into_a_fresh_namespace(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    setup: JobSetup,
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """docs/kubedump-restore.md, step by step: restic restore <snapshot>:<dump folder> --target DIR,
    rewrite the namespace, kubectl apply --server-side -R in the documented order; every re-applied
    object reads back as the dumped one, the controllers adopt the re-applied ReplicaSet and Pods (no
    duplicates), and the ServiceAccount token Secret gets a fresh token."""
    setup.apply()
    session = setup.session()
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 0, logs[-4000:]
    snapshot = json.loads(setup.restic("snapshots", "--json"))[0]["short_id"]

    restored = setup.tmp / "restored"
    setup.restic("restore", f"{snapshot}:{setup.dump_dir}", "--target", str(restored))
    assert (restored / "cluster" / "core" / "v1" / "Namespace" / f"{setup.app}.yaml").is_file()

    fresh = f"restored-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", fresh)
    try:
        wait_for_default_service_account(control_plane, fresh)
        rewritten = setup.tmp / "rewritten"
        files = rewrite_namespace(restored, setup.app, fresh, rewritten)
        assert len(files) >= 8
        # docs/kubedump-restore.md step 3: ServiceAccounts before their token Secrets, owned objects
        # (Pods, ReplicaSets) before their owners so that the controllers adopt them, then the rest.
        for part in ("core/v1/ServiceAccount", "core/v1/Pod", "apps/v1/ReplicaSet", ""):
            if (rewritten / part).exists():
                kubectl("apply", "--server-side", "--force-conflicts", "-R", "-f", str(rewritten / part))

        for path in files:
            dumped = yaml.safe_load(path.read_text())
            group, _, _ = dumped["apiVersion"].rpartition("/")
            kind = dumped["kind"]
            resource = f"{kind}.{group}" if group else kind
            live = get_json(kubectl, resource, dumped["metadata"]["name"], "-n", fresh)
            again = sanitize(group, kind, live)
            assert again == dumped, path

        token = wait_until(
            lambda: get_json(kubectl, "secret", "bot-token", "-n", fresh).get("data", {}).get("token"),
            what="a fresh token in the re-applied ServiceAccount token Secret",
            timeout=60,
            interval=0.3,
        )
        original = get_json(kubectl, "secret", "bot-token", "-n", setup.app)["data"]["token"]
        assert token != original

        deployment_uid = get_json(kubectl, "deployment", "web", "-n", fresh)["metadata"]["uid"]
        dumped_pods = {p.stem for p in files if p.parent.name == "Pod"}
        assert len(dumped_pods) == 2

        def adopted() -> bool:
            sets = get_json(kubectl, "replicasets", "-n", fresh)["items"]
            pods = get_json(kubectl, "pods", "-n", fresh)["items"]
            owners = [o["uid"] for rs in sets for o in rs["metadata"].get("ownerReferences", [])]
            pod_owners = {o["uid"] for p in pods for o in p["metadata"].get("ownerReferences", [])}
            rs_uids = {rs["metadata"]["uid"] for rs in sets}
            names = {p["metadata"]["name"] for p in pods}
            return (
                len(sets) == 1
                and owners == [deployment_uid]
                and names == dumped_pods
                and pod_owners == rs_uids
            )

        wait_until(
            adopted,
            what="the restored ReplicaSet and Pods adopted by the restored Deployment",
            timeout=60,
            interval=0.3,
        )
        original_rs = get_json(kubectl, "replicasets", "-n", setup.app)["items"][0]["metadata"]["name"]
        assert get_json(kubectl, "replicasets", "-n", fresh)["items"][0]["metadata"]["name"] == original_rs
    finally:
        kubectl("delete", "namespace", fresh, "--wait=false", check=False)


def test_paused_configuration_skips_exactly_as_the_sidecar_and_exits_zero(
    kubectl: Kubectl, setup: JobSetup, service_account_kubeconfig: Callable[[str, str], Path]
) -> None:
    """Paused: the session ends Skipped with Warning BackupSessionSkipped "Backup Configuration is
    paused" from the BackupSession Controller; nothing is dumped or backed up; exit 0."""
    setup.apply(paused=True)
    session = setup.session()
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 0, logs[-4000:]
    assert session_obj(kubectl, setup, session)["status"]["phase"] == "Skipped"
    events = events_of(kubectl, setup.home, session)
    assert [(e["type"], e["reason"], e["message"], e["source"]["component"]) for e in events] == [
        ("Warning", "BackupSessionSkipped", "Backup Configuration is paused", "BackupSession Controller")
    ]
    assert not list(setup.backend.iterdir())


def test_a_partial_dump_still_succeeds_and_says_what_was_left_out(
    kubectl: Kubectl,
    setup: JobSetup,
    broken_api_group: str,
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """An undiscoverable API group and a kind the Job may not list (Secrets) do not fail the session:
    it Succeeds, condition ResourcesDumped=False and a Warning event ResourcesSkipped name both."""
    setup.apply()
    narrow = [
        {
            "apiGroups": ["", "apps", "stash.appscode.com"],
            "resources": ["configmaps", "deployments", "namespaces"],
            "verbs": ["get", "list"],
        }
    ]
    kubectl("apply", "-f", "-", input_obj=role_and_binding("stash-dump-read", setup.app, narrow, setup.home))
    session = setup.session()
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 0, logs[-4000:]
    obj = session_obj(kubectl, setup, session)
    assert obj["status"]["phase"] == "Succeeded"
    dumped = conditions(obj)["ResourcesDumped"]
    assert (dumped["status"], dumped["reason"]) == ("False", "SomeResourcesSkipped")
    assert broken_api_group in dumped["message"]
    assert f"{broken_api_group} (503)" in dumped["message"]
    assert "secrets (403)" in dumped["message"]
    warnings = [e for e in events_of(kubectl, setup.home, session) if e["reason"] == "ResourcesSkipped"]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"
    assert broken_api_group in warnings[0]["message"]
    assert "API group version not discoverable" in logs
    listed = setup.restic("ls", "latest")
    assert "/ConfigMap/web-config.yaml" in listed
    assert "/Secret/" not in listed


def test_a_missing_target_fails_the_session_and_exits_non_zero(
    kubectl: Kubectl,
    setup: JobSetup,
    service_account_kubeconfig: Callable[[str, str], Path],
    pushgateway: str,
) -> None:
    """A Deployment target that does not exist: the host fails with TargetNotFound naming it, the
    session ends Failed, the process exits 1, no snapshot is taken, and the failure is in the pushed
    metrics (host and session success 0)."""
    setup.apply(
        target={"apiVersion": "apps/v1", "kind": "Deployment", "name": "nope", "namespace": setup.app}
    )
    kubectl(
        "apply", "-f", "-", input_obj=role_and_binding("stash-dump-read", setup.app, READ_ALL, setup.home)
    )
    session = setup.session()
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 1, logs[-4000:]
    status = session_obj(kubectl, setup, session)["status"]
    assert status["phase"] == "Failed"
    host = status["targets"][0]["stats"][0]
    assert (host["hostname"], host["phase"], host["reason"]) == ("host-0", "Failed", "TargetNotFound")
    assert f"Deployment {setup.app}/nope not found" in host["error"]
    assert status["targets"][0]["ref"]["kind"] == "Deployment"
    assert not list(setup.backend.iterdir())
    job = f"backupconfiguration-{setup.home}-{BC}"
    pushed = pushed_samples(pushgateway, job)
    assert [s.value for s in pushed if s.name == "stash_appscode_com_backup_session_success"] == [0.0]
    host_ok = [s for s in pushed if s.name == "stash_backup_host_backup_success"]
    assert [(s.labels["hostname"], s.labels["target_name"], s.value) for s in host_ok] == [
        ("host-0", "nope", 0.0)
    ]


def test_time_out_fails_the_session_with_deadline_exceeded(
    kubectl: Kubectl, setup: JobSetup, service_account_kubeconfig: Callable[[str, str], Path]
) -> None:
    """spec.timeOut counts from the session's creation: past it the host fails with DeadlineExceeded,
    the session ends Failed and the process exits 1; the dump folder is removed."""
    setup.apply(time_out="1s")
    session = setup.session()
    created = session_obj(kubectl, setup, session)["metadata"]["creationTimestamp"]
    deadline = dt.datetime.fromisoformat(created).timestamp() + 1.0  # what the agent computes
    # The job starts once the deadline has passed by the clock the agent reads (no guessed sleep).
    wait_until(
        lambda: time.time() > deadline,
        what=f"1s past the session's creation ({created})",
        timeout=5,
        interval=0.05,
    )
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 1, logs[-4000:]
    status = session_obj(kubectl, setup, session)["status"]
    assert status["phase"] == "Failed"
    host = status["targets"][0]["stats"][0]
    assert (host["phase"], host["reason"]) == ("Failed", "DeadlineExceeded")
    assert "timeOut (1s)" in host["error"]
    assert not setup.dump_dir.exists()


def test_sigterm_mid_backup_records_the_interruption_and_exits_143(
    kubectl: Kubectl, setup: JobSetup, service_account_kubeconfig: Callable[[str, str], Path]
) -> None:
    """SIGTERM while the job works (the Job's pod deleted): restic is interrupted, host-0 is recorded
    Failed with reason Interrupted, the session ends Failed, the exit status is 128+15."""
    setup.apply()
    session = setup.session()
    process = setup.start_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    try:

        def host_running() -> bool:
            status = session_obj(kubectl, setup, session).get("status", {})
            stats = (status.get("targets") or [{}])[0].get("stats") or []
            return bool(stats) and stats[0].get("phase") == "Running"

        wait_until(host_running, what="host-0 Running", timeout=60, interval=0.3)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, output[-4000:]
    status = session_obj(kubectl, setup, session)["status"]
    assert status["phase"] == "Failed"
    host = status["targets"][0]["stats"][0]
    assert (host["hostname"], host["phase"], host["reason"]) == ("host-0", "Failed", "Interrupted")
    assert not setup.dump_dir.exists()


def test_exit_status_follows_the_session_phase_and_a_missing_session_flag_is_a_usage_error(
    tmp_path: Path,
) -> None:
    """Succeeded and Skipped exit 0, Failed (or unknown) 1; ``job`` without --backup-session exits 2
    and says which flag is missing."""
    assert [exit_code(p) for p in BackupSessionPhase] == [
        0 if p in (BackupSessionPhase.SUCCEEDED, BackupSessionPhase.SKIPPED) else 1
        for p in BackupSessionPhase
    ]
    assert exit_code(None) == 1
    done = subprocess.run(
        [sys.executable, "-m", "stashlet.agent.cli", "job", f"--invoker-name={BC}", f"--tmp-dir={tmp_path}"],
        env={"PATH": os.environ["PATH"], "NAMESPACE": "somewhere", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--backup-session" in done.stdout + done.stderr


# ------------------------------------------------------------------------------------------- pvc-backup

CLAIM = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"}


@pytest.fixture
def claim_setup(
    kubectl: Kubectl, namespace: str, tmp_path: Path, restic_binary: str, pushgateway: str
) -> JobSetup:
    """A ``pvc-backup`` configuration's objects (no application namespace: the claim's Job reads no API
    object besides its own work)."""
    return JobSetup(kubectl, namespace, "unused", tmp_path, restic_binary, pushgateway)


def test_a_claims_job_backs_up_where_the_claim_is_mounted_like_any_session(
    kubectl: Kubectl,
    claim_setup: JobSetup,
    service_account_kubeconfig: Callable[[str, str], Path],
    pushgateway: str,
) -> None:
    """Task pvc-backup with the claim as target and no paths: the Job backs up the mount path
    (``spec.target.volumeMounts[0].mountPath``, Stash's TARGET_MOUNT_PATH) as host-0 without what
    ``spec.target.exclude`` leaves out; the session Succeeds with the claim as its target; the snapshot,
    Repository status, retention and pushed metrics are those of any session; exit 0."""
    setup = claim_setup
    mounted = setup.tmp / "claim"
    (mounted / "pod-1" / "data").mkdir(parents=True)
    (mounted / "pod-1" / "data" / "hello.txt").write_text("hello from pod 1.\n")
    (mounted / "pod-2.log").write_text("noise\n")
    setup.apply(
        target=CLAIM,
        task={"name": "pvc-backup"},
        target_spec={"volumeMounts": [{"name": "data", "mountPath": str(mounted)}], "exclude": ["*.log"]},
    )
    session = setup.session()
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 0, logs[-4000:]

    obj = session_obj(kubectl, setup, session)
    status = obj["status"]
    assert status["phase"] == "Succeeded"
    target = status["targets"][0]
    assert target["ref"] == CLAIM
    assert (target["totalHosts"], target["phase"]) == (1, "Succeeded")
    host = target["stats"][0]
    assert (host["hostname"], host["phase"]) == ("host-0", "Succeeded")
    assert host["snapshots"][0]["path"] == str(mounted)
    found = conditions(obj)
    assert "ResourcesDumped" not in found
    for kind in ("BackendRepositoryInitialized", "RetentionPolicyApplied", "RepositoryIntegrityVerified"):
        assert found[kind]["status"] == "True", found[kind]

    snapshots = json.loads(setup.restic("snapshots", "--json"))
    assert [(s["hostname"], s["paths"]) for s in snapshots] == [("host-0", [str(mounted)])]
    listed = [json.loads(line) for line in setup.restic("ls", "latest", "--json").splitlines()]
    files = {n["path"] for n in listed if n.get("struct_type") == "node" and n["type"] == "file"}
    assert files == {f"{mounted}/pod-1/data/hello.txt"}
    assert setup.restic("dump", "latest", f"{mounted}/pod-1/data/hello.txt") == "hello from pod 1.\n"
    repo = get_json(kubectl, "repository", "local-repo", "-n", setup.home)["status"]
    assert (repo["snapshotCount"], repo["integrity"]) == (1, True)

    samples = pushed_samples(pushgateway, f"backupconfiguration-{setup.home}-{BC}")
    host_ok = [s for s in samples if s.name == "stash_backup_host_backup_success"]
    assert [(s.labels["target_kind"], s.labels["target_name"], s.value) for s in host_ok] == [
        ("PersistentVolumeClaim", "nfs-pvc", 1.0)
    ]


def test_a_claims_job_with_a_target_that_is_no_claim_fails_naming_it(
    kubectl: Kubectl, claim_setup: JobSetup, service_account_kubeconfig: Callable[[str, str], Path]
) -> None:
    """Task pvc-backup whose target is a Deployment (the operator refuses it; the agent too): the session
    ends Failed with reason InvalidTarget naming the field, nothing is backed up, exit 1."""
    setup = claim_setup
    setup.apply(
        target={"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, task={"name": "pvc-backup"}
    )
    session = setup.session()
    code, logs = setup.run_job(session, service_account_kubeconfig(setup.home, JOB_SA))
    assert code == 1, logs[-4000:]
    status = session_obj(kubectl, setup, session)["status"]
    assert status["phase"] == "Failed"
    host = status["targets"][0]["stats"][0]
    assert (host["hostname"], host["phase"], host["reason"]) == ("host-0", "Failed", "InvalidTarget")
    assert (
        "spec.target.ref must name the PersistentVolumeClaim that task pvc-backup backs up" in host["error"]
    )
    assert not list(setup.backend.iterdir())
