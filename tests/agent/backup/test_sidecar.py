"""The sidecar end to end: real API server, real restic, real Pushgateway, agent processes with a
service account's token and exactly the RBAC the operator grants."""

from __future__ import annotations

import base64
import datetime
import filecmp
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.polling import wait_until

from stashlet.agent.backup.daemon import TURN_RENEW_EVERY
from stashlet.api import agent_identity
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection.rbac import RepositoryAccess, agent_account, sidecar_rbac

if TYPE_CHECKING:
    from tests.agent.conftest import AgentProcess

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "not-a-real-password-1"


def get(kubectl: Callable[..., Any], *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def wait_phase(
    kubectl: Callable[..., Any], namespace: str, session: str, phases: set[str], timeout: float = 90
) -> dict[str, Any]:
    """The session once its phase is one of ``phases``."""

    def ended() -> dict[str, Any] | None:
        obj: dict[str, Any] = get(kubectl, "backupsession", session, "-n", namespace)
        return obj if obj.get("status", {}).get("phase") in phases else None

    def status() -> str:  # for the failure: where the session is
        return json.dumps(get(kubectl, "backupsession", session, "-n", namespace).get("status"))

    found = wait_until(
        ended, timeout=timeout, interval=0.3, what=f"session {session} in {phases}", log=status
    )
    assert found is not None  # wait_until returns the probe's first truthy value
    return found


class Setup:
    """Objects of one backup: Secret, Repository (local backend), BackupConfiguration, workload, RBAC."""

    def __init__(
        self,
        kubectl: Callable[..., Any],
        namespace: str,
        tmp_path: Path,
        *,
        kind: str = "Deployment",
        replicas: int = 1,
        retention: dict[str, Any] | None = None,
        paused: bool = False,
        backend: dict[str, Any] | None = None,
    ) -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.repo_dir = tmp_path / "backend"
        self.data_dirs: list[Path] = []
        self.kind = kind
        self.replicas = replicas
        self.retention = retention or {"name": "keep-last-5", "keepLast": 5, "prune": True}
        self.paused = paused
        self.backend = backend
        """The Repository's backend (without its Secret's name); None: a local folder (:attr:`repo_dir`)."""
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.secrets_dir = tmp_path / "secrets"
        self.account = ""
        self.repo_dir.mkdir()

    def apply(self, secret: dict[str, str] | None = None) -> None:
        """The objects, and the agent's grants as the operator makes them: bound to the configuration's own
        account (:attr:`account`), the storage Secret reaching the agent as the kubelet mounts it
        (:meth:`agent_env`), never through the API."""
        ns = self.namespace
        data = secret if secret is not None else {"RESTIC_PASSWORD": PASSWORD}
        mounted = self.secrets_dir / "local-secret"
        mounted.mkdir(parents=True, exist_ok=True)
        for key, value in data.items():
            (mounted / key).write_text(value)
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "local-secret", "namespace": ns},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            },
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": "local-repo", "namespace": ns},
                "spec": {
                    "backend": {
                        **(
                            self.backend
                            or {
                                "local": {
                                    "mountPath": str(self.repo_dir),
                                    "hostPath": {"path": str(self.repo_dir)},
                                }
                            }
                        ),
                        "storageSecretName": "local-secret",
                    }
                },
            },
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": "app-backup", "namespace": ns},
                "spec": {
                    "repository": {"name": "local-repo"},
                    "schedule": "*/5 * * * *",
                    "paused": self.paused,
                    "target": {
                        "ref": {"apiVersion": "apps/v1", "kind": self.kind, "name": "app"},
                        "paths": [str(self.data)],
                        "volumeMounts": [{"name": "data", "mountPath": str(self.data)}],
                    },
                    "retentionPolicy": self.retention,
                },
            },
            self.workload(),
        ]
        self.kubectl("apply", "-f", "-", input_obj=objects)
        bc = BackupConfiguration.from_dict(get(self.kubectl, "backupconfiguration", "app-backup", "-n", ns))
        self.account = agent_account(bc)
        rbac = sidecar_rbac(
            bc,
            WORKLOAD_KINDS[self.kind],
            "app",
            repository=RepositoryAccess(ns, "local-repo", "local-secret"),
        )
        self.kubectl("apply", "-f", "-", input_obj=rbac)

    def agent_env(self) -> dict[str, str]:
        """Where the agent finds the mounted storage Secret."""
        return {agent_identity.ENV_STORAGE_SECRETS_DIR: str(self.secrets_dir)}

    def start_agent(
        self,
        start_agent: Callable[..., AgentProcess],
        kubeconfig: Path,
        *,
        pod_name: str = "app-x",
        pushgateway_url: str | None = None,
    ) -> AgentProcess:
        """The sidecar of one of the workload's pods, as that pod runs it: ``kubeconfig`` (the
        configuration's account, :attr:`account`), the storage Secret as mounted (:meth:`agent_env`)."""
        return start_agent(
            namespace=self.namespace,
            invoker="app-backup",
            target_kind=self.kind,
            target_name="app",
            pod_name=pod_name,
            kubeconfig=kubeconfig,
            pushgateway_url=pushgateway_url,
            extra_env=self.agent_env(),
        )

    def patch_configuration(self, spec: dict[str, Any]) -> None:
        """Merge ``spec`` into the BackupConfiguration's spec."""
        self.kubectl(
            "patch",
            "backupconfiguration",
            "app-backup",
            "-n",
            self.namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": spec}),
        )

    def workload(self) -> dict[str, Any]:
        labels = {"app": "app"}
        template = {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "busybox",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sleep", "3600"],
                    }
                ]
            },
        }
        spec: dict[str, Any] = {
            "replicas": self.replicas,
            "selector": {"matchLabels": labels},
            "template": template,
        }
        if self.kind == "StatefulSet":
            spec["serviceName"] = "app"
        return {
            "apiVersion": "apps/v1",
            "kind": self.kind,
            "metadata": {"name": "app", "namespace": self.namespace},
            "spec": spec,
        }

    def session(self, name: str, annotations: dict[str, str] | None = None) -> str:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": {"stash.appscode.com/backup-configuration": "app-backup"},
        }
        if annotations:
            meta["annotations"] = annotations
        self.kubectl(
            "apply",
            "-f",
            "-",
            input_obj={
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupSession",
                "metadata": meta,
                "spec": {
                    "invoker": {
                        "apiGroup": "stash.appscode.com",
                        "kind": "BackupConfiguration",
                        "name": "app-backup",
                    }
                },
            },
        )
        return name

    def restic(self, *args: str, restic_binary: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RESTIC_REPOSITORY": str(self.repo_dir), "RESTIC_PASSWORD": PASSWORD}
        return subprocess.run(
            [restic_binary, "--no-cache", *args],
            capture_output=True,
            text=True,
            env=env,
            check=check,
            timeout=120,
        )


def write_tree(root: Path) -> None:
    (root / "dir" / "empty").mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "dir" / "b.bin").write_bytes(os.urandom(300_000))
    (root / "dir" / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "dir" / "exec.sh").chmod(0o750)
    (root / "link").symlink_to("a.txt")


def events_for(kubectl: Callable[..., Any], namespace: str, name: str) -> list[dict[str, Any]]:
    items = get(kubectl, "events", "-n", namespace)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def condition_once(
    kubectl: Callable[..., Any], namespace: str, session: str, type_: str, timeout: float = 60
) -> dict[str, Any]:
    """The session's condition ``type_`` once it is set (some are set after the session has ended)."""

    def probe() -> dict[str, Any] | None:
        status = get(kubectl, "backupsession", session, "-n", namespace).get("status", {})
        return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)

    found = wait_until(probe, timeout=timeout, what=f"condition {type_} on {session}")
    assert found is not None
    return found


def repository_once(
    kubectl: Callable[..., Any], namespace: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """The Repository's status once ``ready`` holds (it is written after the session has reported)."""

    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = get(kubectl, "repository", "local-repo", "-n", namespace).get("status", {})
        return status if ready(status) else None

    found = wait_until(probe, timeout=timeout, what="the Repository's status")
    assert found is not None
    return found


def log_lines(logs: str, msg: str) -> list[dict[str, Any]]:
    """The agent's log lines whose message is ``msg``, parsed."""
    lines = []
    for line in logs.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == msg:
            lines.append(entry)
    return lines


def finished_lines(logs: str) -> list[dict[str, Any]]:
    """The agent's ``backup session host finished`` log lines, parsed."""
    return log_lines(logs, "backup session host finished")


def metrics_from(url: str) -> dict[str, list[Any]]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend(family.samples)
    return out


def test_deployment_backup_succeeds_and_matches_restic(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    pushgateway: str,
    restic_binary: str,
) -> None:
    """A session created by hand goes Running -> Succeeded with host stats; a second reuses the repository;
    Repository status and pushed metrics match restic's own view; the data restores byte for byte."""
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    agent = setup.start_agent(
        start_agent,
        service_account_kubeconfig(namespace, setup.account),
        pod_name="app-7d4b9-x1",
        pushgateway_url=pushgateway,
    )
    first = wait_phase(kubectl, namespace, setup.session("first"), {"Succeeded", "Failed"})
    assert first["status"]["phase"] == "Succeeded", (first["status"], agent.logs()[-3000:])
    target = first["status"]["targets"][0]
    assert (target["ref"]["kind"], target["totalHosts"], target["phase"]) == ("Deployment", 1, "Succeeded")
    host = target["stats"][0]
    assert (host["hostname"], host["phase"]) == ("host-0", "Succeeded")
    assert host["snapshots"][0]["fileStats"]["totalFiles"] == 3
    assert host["snapshots"][0]["fileStats"]["newFiles"] == 3
    assert first["status"]["sessionDuration"]
    conditions = {c["type"]: c["status"] for c in first["status"]["conditions"]}
    assert conditions["BackendRepositoryInitialized"] == "True"
    assert conditions["RetentionPolicyApplied"] == "True"
    assert conditions["MetricsPushed"] == "True"
    # The first check of the Repository is due: it runs once the session has reported.
    checked = condition_once(kubectl, namespace, "first", "RepositoryIntegrityVerified")
    assert (checked["status"], checked["reason"]) == ("True", "SuccessfullyVerifiedRepositoryIntegrity")

    second = wait_phase(kubectl, namespace, setup.session("second"), {"Succeeded", "Failed"})
    assert second["status"]["phase"] == "Succeeded"
    stats2 = second["status"]["targets"][0]["stats"][0]["snapshots"][0]["fileStats"]
    assert (stats2["newFiles"], stats2["unmodifiedFiles"]) == (0, 3)
    # Not due again within a day: the session says when it last ran and what it found, in its final write;
    # keepLast 5 over two snapshots removes nothing: no forget either. One restic process: the backup.
    found = {c["type"]: c for c in second["status"]["conditions"]}
    not_due = found["RepositoryIntegrityVerified"]
    assert (not_due["status"], not_due["reason"]) == ("True", "CheckNotDue")
    assert "stash.appscode.com/check-interval" in not_due["message"]
    assert "restic forget not run" in found["RetentionPolicyApplied"]["message"]
    finished = {line["session"]: line for line in finished_lines(agent.logs())}
    assert finished[f"{namespace}/second"]["restic_processes"] == 1
    # the first: backup (exit 10: no repository), init, backup; a repository just made holds only the
    # session's snapshot, so no forget there either
    assert finished[f"{namespace}/first"]["restic_processes"] == 3
    for line in finished.values():
        assert line["own_seconds"] == pytest.approx(
            line["session_seconds"] - line["restic_seconds"], abs=1e-3
        )
        assert line["restic_max_rss_kib"] > 0

    snapshots = json.loads(
        setup.restic("snapshots", "--no-lock", "--json", restic_binary=restic_binary).stdout
    )
    assert len(snapshots) == 2
    assert {s["hostname"] for s in snapshots} == {"host-0"}
    repo = repository_once(kubectl, namespace, lambda r: r.get("snapshotCount") == 2)
    raw = json.loads(setup.restic("stats", "--mode=raw-data", "--json", restic_binary=restic_binary).stdout)
    assert repo["integrity"] is True
    assert repo["lastCheckTime"]
    assert repo["snapshotsRemovedOnLastCleanup"] == 0
    times = sorted(s["time"] for s in snapshots)
    assert repo["firstBackupTime"] == times[0][:19] + "Z"
    assert repo["lastBackupTime"] == times[-1][:19] + "Z"
    from stashlet.agent.sizes import format_size, parse_size

    assert repo["totalSize"] == format_size(raw["total_size"])
    assert abs(parse_size(repo["totalSize"]) - raw["total_size"]) <= raw["total_size"] * 0.001

    job = f"backupconfiguration-{namespace}-app-backup"

    def pushed_count() -> dict[str, list[Any]] | None:
        found = metrics_from(pushgateway)
        counts = [s.value for s in found["stash_repository_snapshot_count"] if s.labels.get("job") == job]
        return found if counts == [2.0] else None

    pushed = wait_until(pushed_count, timeout=30, what="the Repository's metrics after the second session")
    assert pushed is not None
    counts = [s for s in pushed["stash_repository_snapshot_count"] if s.labels.get("job") == job]
    last_check = [s for s in pushed["stash_repository_last_check_time_seconds"] if s.labels.get("job") == job]
    assert len(last_check) == 1
    assert last_check[0].value > 0
    assert "hostname" not in counts[0].labels  # session-wide: one copy per job, whichever host sent it
    host_ok = [s for s in pushed["stash_backup_host_backup_success"] if s.labels.get("job") == job]
    assert [(s.labels["hostname"], s.value) for s in host_ok] == [("host-0", 1.0)]
    success = [s for s in pushed["stash_appscode_com_backup_session_success"] if s.labels.get("job") == job]
    assert [s.value for s in success] == [1.0]

    restored = tmp_path / "restored"
    setup.restic("restore", "latest", "--target", str(restored), restic_binary=restic_binary)
    copy = restored / str(setup.data).lstrip("/")
    comparison = filecmp.dircmp(setup.data, copy)
    assert not (comparison.left_only or comparison.right_only or comparison.diff_files)
    assert (copy / "dir" / "b.bin").read_bytes() == (setup.data / "dir" / "b.bin").read_bytes()
    assert (copy / "dir" / "exec.sh").stat().st_mode == (setup.data / "dir" / "exec.sh").stat().st_mode
    assert os.readlink(copy / "link") == "a.txt"
    assert (copy / "dir" / "empty").is_dir()

    succeeded = [e for e in events_for(kubectl, namespace, "first") if e["reason"] == "Host Backup Succeeded"]
    assert succeeded
    assert PASSWORD not in agent.logs()


def test_retention_keeps_exactly_what_the_policy_says(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """keepLast 2 over four backups leaves the two newest snapshots and reports 1 removed on the last run."""
    setup = Setup(
        kubectl, namespace, tmp_path, retention={"name": "keep-last-2", "keepLast": 2, "prune": True}
    )
    write_tree(setup.data)
    setup.apply()
    setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    ids = []
    for i in range(4):
        (setup.data / f"file-{i}.txt").write_text(f"version {i}\n")
        done = wait_phase(kubectl, namespace, setup.session(f"s{i}"), {"Succeeded", "Failed"})
        assert done["status"]["phase"] == "Succeeded"
        ids.append(done["status"]["targets"][0]["stats"][0]["snapshots"][0]["name"])
    snapshots = json.loads(
        setup.restic("snapshots", "--no-lock", "--json", restic_binary=restic_binary).stdout
    )
    assert sorted(s["short_id"] for s in snapshots) == sorted(ids[-2:])
    repo = repository_once(
        kubectl, namespace, lambda r: r.get("lastBackupTime", "") >= snapshots[-1]["time"][:19]
    )
    assert (repo["snapshotCount"], repo["snapshotsRemovedOnLastCleanup"]) == (2, 1)
    # forget ran where the policy removes one (s2, s3: a third snapshot), not in s0 (the repository was
    # created by that session: one snapshot) nor s1 (two)
    retention = {
        name: {
            c["type"]: c for c in get(kubectl, "backupsession", name, "-n", namespace)["status"]["conditions"]
        }["RetentionPolicyApplied"]["message"]
        for name in ("s0", "s1", "s2", "s3")
    }
    assert all("removed 0 (restic forget not run" in retention[name] for name in ("s0", "s1"))
    assert all("removed 1" in retention[name] for name in ("s2", "s3"))
    assert not any("not run" in retention[name] for name in ("s2", "s3"))


def test_paused_configuration_skips_with_the_seed_event(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """Paused: a session ends Skipped with Warning BackupSessionSkipped "Backup Configuration is paused";
    with the opt-in annotation the backup runs anyway."""
    setup = Setup(kubectl, namespace, tmp_path, paused=True)
    write_tree(setup.data)
    setup.apply()
    setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    skipped = wait_phase(kubectl, namespace, setup.session("instant-backupsession"), {"Skipped", "Succeeded"})
    assert skipped["status"]["phase"] == "Skipped"
    events = events_for(kubectl, namespace, "instant-backupsession")
    assert [(e["type"], e["reason"], e["message"], e["source"]["component"]) for e in events] == [
        ("Warning", "BackupSessionSkipped", "Backup Configuration is paused", "BackupSession Controller")
    ]
    out = kubectl("get", "backupsession", "instant-backupsession", "-n", namespace).stdout
    assert "Skipped" in out.splitlines()[1]
    forced = wait_phase(
        kubectl,
        namespace,
        setup.session("forced", {"stash.appscode.com/backup-while-paused": "true"}),
        {"Skipped", "Succeeded", "Failed"},
    )
    assert forced["status"]["phase"] == "Succeeded"


@pytest.mark.parametrize(
    ("secret", "mutate", "reason", "message"),
    [
        pytest.param(
            {"RESTIC_PASSWORD": PASSWORD},
            "missing-path",
            "TargetPathNotFound",
            "do not exist",
            id="target-path-missing",
        ),
        pytest.param(
            {"OTHER": "x"}, None, "BackendSecretNotAvailable", "RESTIC_PASSWORD", id="secret-key-missing"
        ),
        pytest.param(
            {"RESTIC_PASSWORD": PASSWORD},
            "no-secret",
            "BackendSecretNotAvailable",
            "local-secret",
            id="secret-missing",
        ),
        pytest.param(
            {"RESTIC_PASSWORD": PASSWORD},
            "no-init",
            "RepositoryNotFound",
            "init-repository",
            id="repository-missing-init-disabled",
        ),
        pytest.param(
            {"RESTIC_PASSWORD": PASSWORD}, "wrong-password", "WrongPassword", "password", id="wrong-password"
        ),
    ],
)
def test_faults_fail_the_session_with_a_named_reason(
    secret: dict[str, str],
    mutate: str | None,
    reason: str,
    message: str,
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """Each fault fails the host with its own reason and a message naming what is wrong; nothing Succeeded."""
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply(secret=secret)
    if mutate == "missing-path":
        import shutil

        shutil.rmtree(setup.data)
    elif mutate == "no-secret":  # the Secret gone: its optional volume is an empty folder
        kubectl("delete", "secret", "local-secret", "-n", namespace)
        for key in (setup.secrets_dir / "local-secret").iterdir():
            key.unlink()
    elif mutate == "no-init":
        kubectl(
            "annotate",
            "repository",
            "local-repo",
            "-n",
            namespace,
            "stash.appscode.com/init-repository=false",
        )
    elif mutate == "wrong-password":
        env = {**os.environ, "RESTIC_REPOSITORY": str(setup.repo_dir), "RESTIC_PASSWORD": "another-password"}
        subprocess.run([restic_binary, "init"], env=env, check=True, capture_output=True, timeout=60)
    setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    done = wait_phase(kubectl, namespace, setup.session("faulty"), {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Failed"
    host = done["status"]["targets"][0]["stats"][0]
    assert host["reason"] == reason
    assert message in host["error"]
    assert PASSWORD not in json.dumps(done)
    failed = [e for e in events_for(kubectl, namespace, "faulty") if e["reason"] == "Host Backup Failed"]
    assert failed
    assert failed[0]["type"] == "Warning"


def test_statefulset_hosts_each_back_up_once(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """A StatefulSet of 3 with 3 agent processes: 3 host entries (host-0..2), one Succeeded session, and
    one snapshot per host in the repository."""
    setup = Setup(kubectl, namespace, tmp_path, kind="StatefulSet", replicas=3)
    write_tree(setup.data)
    setup.apply()
    kubeconfig = service_account_kubeconfig(namespace, setup.account)
    for ordinal in range(3):
        setup.start_agent(start_agent, kubeconfig, pod_name=f"app-{ordinal}")
    done = wait_phase(kubectl, namespace, setup.session("sts"), {"Succeeded", "Failed"}, timeout=150)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    target = done["status"]["targets"][0]
    assert target["totalHosts"] == 3
    assert sorted((s["hostname"], s["phase"]) for s in target["stats"]) == [
        ("host-0", "Succeeded"),
        ("host-1", "Succeeded"),
        ("host-2", "Succeeded"),
    ]
    snapshots = json.loads(
        setup.restic("snapshots", "--no-lock", "--json", restic_binary=restic_binary).stdout
    )
    assert sorted(s["hostname"] for s in snapshots) == ["host-0", "host-1", "host-2"]


def test_one_replica_of_a_deployment_backs_up_holding_the_lease_only_meanwhile(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """Two replicas of a Deployment: at rest neither takes Lease lock-deployment-app-backup (none exists);
    a session is backed up once, as host-0, by one of them (the host entry names its pod), the other
    finding the host done; afterwards the Lease is given back (no holder), stays unrenewed, and neither
    replica says it leads; the repository has one snapshot."""
    setup = Setup(kubectl, namespace, tmp_path, replicas=2)
    write_tree(setup.data)
    setup.apply()
    kubeconfig = service_account_kubeconfig(namespace, setup.account)
    agents = [setup.start_agent(start_agent, kubeconfig, pod_name=f"app-abc-{i}") for i in range(2)]

    def leases() -> list[str]:
        listed = get(kubectl, "leases", "-n", namespace)["items"]
        return [lease["metadata"]["name"] for lease in listed]

    def leaders() -> list[bool]:
        found = []
        for agent in agents:
            with urllib.request.urlopen(f"{agent.url}/status", timeout=5) as response:  # noqa: S310
                found.append(json.loads(response.read())["leader"])
        return found

    assert leases() == []  # an agent polling a Lease at rest would have made it on its first try
    assert leaders() == [False, False]

    done = wait_phase(kubectl, namespace, setup.session("leader"), {"Succeeded", "Failed"})

    assert done["status"]["phase"] == "Succeeded"
    [entry] = done["status"]["targets"][0]["stats"]
    assert entry["hostname"] == "host-0"
    assert entry["pod"] in {"app-abc-0", "app-abc-1"}
    repository_once(kubectl, namespace, lambda r: "lastCheckTime" in r)  # the check's lock is gone

    def given_back() -> dict[str, Any] | None:
        lease: dict[str, Any] = get(kubectl, "lease", "lock-deployment-app-backup", "-n", namespace)
        return None if lease["spec"].get("holderIdentity") else lease

    released = wait_until(given_back, timeout=30, what="the Lease given back")
    assert released is not None
    time.sleep(TURN_RENEW_EVERY * 2)
    lease = get(kubectl, "lease", "lock-deployment-app-backup", "-n", namespace)
    assert lease["metadata"]["resourceVersion"] == released["metadata"]["resourceVersion"]
    assert leaders() == [False, False]
    assert (
        len(json.loads(setup.restic("snapshots", "--no-lock", "--json", restic_binary=restic_binary).stdout))
        == 1
    )


def test_a_replica_waiting_for_its_turn_hears_from_the_watch_that_its_session_ended(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """Two replicas of a Deployment wait for a backup Lease held elsewhere; the session is ended Failed
    (as the operator ends a session nobody ran): both stop waiting, told by their session watch (not by
    reading the session, which a waiting replica does only every 30 s); once the Lease is free the next
    session is backed up."""
    setup = Setup(kubectl, namespace, tmp_path, replicas=2)
    write_tree(setup.data)
    setup.apply()
    kubeconfig = service_account_kubeconfig(namespace, setup.account)
    agents = [setup.start_agent(start_agent, kubeconfig, pod_name=f"app-abc-{i}") for i in range(2)]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "lock-deployment-app-backup", "namespace": namespace},
        "spec": {
            "holderIdentity": "elsewhere",
            "leaseDurationSeconds": 600,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    kubectl("apply", "-f", "-", input_obj=lease)
    name = setup.session("held-elsewhere")

    def turns() -> list[dict[str, Any] | None]:
        found = []
        for agent in agents:
            with urllib.request.urlopen(f"{agent.url}/status", timeout=5) as response:  # noqa: S310
                found.append(json.loads(response.read())["waitingForTurn"])
        return found

    def waiting() -> list[dict[str, Any]] | None:
        found = turns()
        return [t for t in found if t] if all(found) else None

    waits = wait_until(waiting, timeout=30, what="both replicas to wait for their turn")
    assert waits is not None
    assert {(t["session"], t["lease"]) for t in waits} == {(name, "lock-deployment-app-backup")}
    session = get(kubectl, "backupsession", name, "-n", namespace)
    assert not (session.get("status") or {}).get("targets"), session.get("status")
    status = json.dumps({"status": {"phase": "Failed"}})
    kubectl(
        "patch", "backupsession", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", status
    )

    def stopped() -> list[dict[str, Any]] | None:
        lines = [
            line
            for agent in agents
            for line in log_lines(agent.logs(), "stopped waiting for the backup turn: the session ended")
        ]
        return lines if len(lines) == 2 else None

    lines = wait_until(stopped, timeout=60, what="both replicas to stop waiting")
    assert lines is not None
    assert [(line["session"], line["seen_by"]) for line in lines] == [(f"{namespace}/{name}", "watch")] * 2
    assert turns() == [None, None]

    kubectl("delete", "lease", "lock-deployment-app-backup", "-n", namespace)
    done = wait_phase(kubectl, namespace, setup.session("after"), {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", done["status"]


def test_status_api_and_instant_backup(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """GET /status shows the invoker, host and last results; POST /backup from loopback creates a labelled
    BackupSession owned by the configuration, which then succeeds like any other."""
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    request = urllib.request.Request(f"{agent.url}/backup", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 202
        name = json.loads(response.read())["backupSession"]
    assert name.startswith("app-backup-")
    session = wait_phase(kubectl, namespace, name, {"Succeeded", "Failed"})
    assert session["status"]["phase"] == "Succeeded"
    assert session["metadata"]["labels"]["stash.appscode.com/backup-configuration"] == "app-backup"
    assert session["metadata"]["ownerReferences"][0]["kind"] == "BackupConfiguration"

    def agent_status() -> dict[str, Any] | None:
        """GET /status once the Repository's status is in it (written after the session has reported)."""
        with urllib.request.urlopen(f"{agent.url}/status", timeout=5) as response:  # noqa: S310
            found: dict[str, Any] = json.loads(response.read())
        return found if found.get("repository") else None

    status = wait_until(agent_status, timeout=30, what="the Repository in GET /status")
    assert status is not None
    assert status["invoker"]["name"] == "app-backup"
    assert status["host"] == "host-0"
    assert status["lastResults"][name]["phase"] == "Succeeded"
    assert status["repository"]["snapshotCount"] == 1


def test_pushgateway_down_does_not_fail_the_backup(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """With the Pushgateway unreachable the session Succeeds; MetricsPushed=False and a Warning event."""
    from stashlet.localcluster.processes import free_port

    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    setup.start_agent(
        start_agent,
        service_account_kubeconfig(namespace, setup.account),
        pushgateway_url=f"http://127.0.0.1:{free_port()}",
    )
    done = wait_phase(kubectl, namespace, setup.session("nogw"), {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded"
    conditions = {c["type"]: c for c in done["status"]["conditions"]}
    assert conditions["MetricsPushed"]["status"] == "False"
    assert "127.0.0.1" in conditions["MetricsPushed"]["message"]
    assert any(
        e["reason"] == "MetricsPushFailed" and e["type"] == "Warning"
        for e in events_for(kubectl, namespace, "nogw")
    )


def test_sigterm_mid_backup_interrupts_restic_cleanly(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """SIGTERM while restic runs: the agent exits inside the grace period, the host is Failed with reason
    Interrupted, and no lock is left in the repository."""
    setup = Setup(kubectl, namespace, tmp_path)
    (setup.data / "big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    setup.apply()
    setup.patch_configuration({"target": {"args": ["--limit-upload=2048"]}})
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    name = setup.session("long")

    def progress() -> bool:
        with urllib.request.urlopen(f"{agent.url}/status", timeout=5) as response:  # noqa: S310
            running = json.loads(response.read())["running"]
        return bool(running and running.get("progress"))

    wait_until(progress, timeout=60, interval=0.3, what="restic's progress in /status", log=agent.logs)
    started = time.monotonic()
    code = agent.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"took {elapsed:.1f}s to stop"
    assert code == 0
    session = get(kubectl, "backupsession", name, "-n", namespace)
    host = session["status"]["targets"][0]["stats"][0]
    assert (host["phase"], host["reason"]) == ("Failed", "Interrupted")
    locks = setup.restic("list", "locks", "--no-lock", restic_binary=restic_binary).stdout.split()
    assert locks == []


def test_agent_restart_fails_the_session_it_left_running(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """A session this host left Running (agent killed with SIGKILL) is ended Failed with reason
    AgentRestarted by the next agent on the same host."""
    setup = Setup(kubectl, namespace, tmp_path)
    (setup.data / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    setup.apply()
    setup.patch_configuration({"target": {"args": ["--limit-upload=1024"]}})
    kubeconfig = service_account_kubeconfig(namespace, setup.account)
    first = setup.start_agent(start_agent, kubeconfig)
    name = setup.session("orphan")
    wait_until(
        lambda: get(kubectl, "backupsession", name, "-n", namespace).get("status", {}).get("targets"),
        timeout=60,
        interval=0.3,
        what=f"session {name} to record its target",
        log=first.logs,
    )
    import signal

    first.stop(signal.SIGKILL)
    subprocess.run(["pkill", "-KILL", "-f", f"restic.*{setup.repo_dir}"], check=False)
    setup.start_agent(start_agent, kubeconfig)
    done = wait_phase(kubectl, namespace, name, {"Failed", "Succeeded"}, timeout=60)
    host = done["status"]["targets"][0]["stats"][0]
    assert (done["status"]["phase"], host["reason"]) == ("Failed", "AgentRestarted")
