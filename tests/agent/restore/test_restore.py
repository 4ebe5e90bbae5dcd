"""``stashlet-agent restore`` (the stash-init init-container) end to end: real API server, real restic,
real Pushgateway; the agent runs as a process with its own service account's token and exactly the RBAC
the init-container needs (no Secret: the storage Secret is a folder of files, as the kubelet mounts it into
``stash-init``), each volume bound at its mount path in a private mount namespace (``unshare
--mount``) where a pod would have its own volume, as the kubelet gives it.

The backups are taken with plain restic exactly as the sidecar takes them (``backup --host=<host> --
<paths>``), so each test controls which host's data lies where.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.polling import wait_until

from stashlet.api import agent_identity, names
from stashlet.api.agent_contract import AgentInvocation
from stashlet.localcluster.processes import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

PASSWORD = "correct horse battery staple"  # the password of conftest's template repository
REPOSITORY = "local-repo"
SECRET = "local-secret"
PLURALS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "ReplicaSet": "replicasets",
}

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def restore_rules(
    session_names: Sequence[str], kind: str, workload: str, repository: str = REPOSITORY
) -> list[dict[str, Any]]:
    """Exactly what ``stashlet-agent restore`` uses (the rules the operator must grant the init-container):
    no Secret, as the storage Secret of its namespace is mounted into ``stash-init``."""
    lease = names.lease_name(kind, workload, "restore")
    return [
        {
            "apiGroups": [names.GROUP],
            "resources": [names.RESTORE_SESSIONS],
            "verbs": ["get"],
            "resourceNames": list(session_names),
        },
        {
            "apiGroups": [names.GROUP],
            "resources": [f"{names.RESTORE_SESSIONS}/status"],
            "verbs": ["update"],
            "resourceNames": list(session_names),
        },
        {
            "apiGroups": [names.GROUP],
            "resources": [names.REPOSITORIES],
            "verbs": ["get"],
            "resourceNames": [repository],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "update"],
            "resourceNames": [lease],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": [PLURALS[kind]], "verbs": ["get"], "resourceNames": [workload]},
    ]


@dataclass
class Run:
    """A finished ``stashlet-agent restore`` process."""

    code: int
    log: str

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines (every line must be one)."""
        return [json.loads(line) for line in self.log.splitlines() if line.strip()]


@dataclass
class RestoreEnv:
    """One test's namespace, backend folder and the objects of a restore."""

    kubectl: Kubectl
    namespace: str
    tmp_path: Path
    restic_binary: str
    kubeconfig_for: Callable[[str, str], Path]
    template_repository: Path
    repo_dir: Path = field(init=False)
    data: Path = field(init=False)
    runs: int = 0

    def __post_init__(self) -> None:
        self.repo_dir = self.tmp_path / "backend" / "repo"
        shutil.copytree(self.template_repository, self.repo_dir)
        self.data = self.tmp_path / "data"
        self.data.mkdir()

    # --- objects ----------------------------------------------------------------------------------

    @property
    def storage_secrets(self) -> Path:
        """Where the storage Secrets are mounted (``$STASHLET_STORAGE_SECRETS_DIR``), as in ``stash-init``."""
        return self.tmp_path / "storage-secrets"

    def apply(self, *objects: dict[str, Any]) -> None:
        """Apply ``objects``; a Secret is also written where ``stash-init`` has it mounted, one file per key
        (as the kubelet updates a Secret volume)."""
        self.kubectl("apply", "-f", "-", input_obj=list(objects))
        for obj in objects:
            if obj["kind"] == "Secret":
                mounted = self.storage_secrets / obj["metadata"]["name"]
                shutil.rmtree(mounted, ignore_errors=True)
                mounted.mkdir(parents=True)
                for key, value in obj["data"].items():
                    (mounted / key).write_bytes(base64.b64decode(value))

    def secret(self, password: str = PASSWORD) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": self.namespace},
            "data": {"RESTIC_PASSWORD": base64.b64encode(password.encode()).decode()},
        }

    def repository(self) -> dict[str, Any]:
        return {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": REPOSITORY, "namespace": self.namespace},
            "spec": {
                "backend": {
                    "local": {"mountPath": str(self.repo_dir), "hostPath": {"path": str(self.repo_dir)}},
                    "storageSecretName": SECRET,
                }
            },
        }

    def workload(self, kind: str, name: str, replicas: int = 1) -> dict[str, Any]:
        labels = {"app": name}
        spec: dict[str, Any] = {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
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
            },
        }
        if kind == "StatefulSet":
            spec["serviceName"] = name
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }

    def restore_session(
        self,
        name: str,
        kind: str,
        workload: str,
        *,
        rules: list[dict[str, Any]] | None = None,
        mounts: Sequence[Path] | None = None,
        replicas: int | None = None,
        args: list[str] | None = None,
    ) -> dict[str, Any]:
        target: dict[str, Any] = {
            "ref": {"apiVersion": "apps/v1", "kind": kind, "name": workload},
            "volumeMounts": [
                {"name": f"vol-{i}", "mountPath": str(path)} for i, path in enumerate(mounts or [self.data])
            ],
        }
        # Stash restores nothing without a rule: the default restores the backed-up path of the tests.
        target["rules"] = [{"paths": [str(self.data)]}] if rules is None else rules
        if replicas is not None:
            target["replicas"] = replicas
        if args is not None:
            target["args"] = args
        return {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"repository": {"name": REPOSITORY}, "target": target},
        }

    def grant(self, account: str, sessions: Sequence[str], kind: str, workload: str) -> Path:
        """A ServiceAccount with exactly the init-container's rights, and a kubeconfig with its token."""
        role = f"stash-init-{workload}"
        self.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": role, "namespace": self.namespace},
                "rules": restore_rules(sessions, kind, workload),
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": role, "namespace": self.namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": self.namespace}],
            },
        )
        return self.kubeconfig_for(self.namespace, account)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-n", self.namespace, "-o", "json").stdout)

    def session(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.get("restoresession", name)
        return obj

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.get("events")["items"]
        return [e for e in items if e["involvedObject"]["name"] == name]

    # --- restic, as the agent runs it ------------------------------------------------------------

    def restic_env(self, password: str = PASSWORD) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.tmp_path),
            "RESTIC_REPOSITORY": str(self.repo_dir),
            "RESTIC_PASSWORD": password,
        }

    def backup(self, host: str, path: Path, *, volume: Path | None = None) -> str:
        """``restic backup --host=<host> -- <path>`` as the sidecar runs it; ``volume`` bound at ``path``."""
        argv = [self.restic_binary, "--json", "--no-cache", "backup", f"--host={host}", "--", str(path)]
        result = subprocess.run(
            in_mounts(argv, {path: volume} if volume else {}),
            env=self.restic_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        summary = [json.loads(line) for line in result.stdout.splitlines() if '"summary"' in line][-1]
        return str(summary["snapshot_id"])

    def snapshots(self) -> list[dict[str, Any]]:
        out = subprocess.run(
            [self.restic_binary, "--no-cache", "snapshots", "--json"],
            env=self.restic_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        found: list[dict[str, Any]] = json.loads(out)
        return found

    # --- the init-container ----------------------------------------------------------------------

    def command(
        self,
        session: str,
        kind: str,
        workload: str,
        pod: str,
        *,
        binds: Mapping[Path, Path] | None = None,
        read_only: Sequence[Path] = (),
        pushgateway: str | None = None,
    ) -> list[str]:
        tmp_dir = self.tmp_path / f"stash-tmp-{pod}"
        tmp_dir.mkdir(exist_ok=True)
        invocation = AgentInvocation(
            mode="restore",
            invoker_kind="RestoreSession",
            invoker_name=session,
            target_kind=kind,
            target_name=workload,
            status_port=0,
            tmp_dir=str(tmp_dir),
            pushgateway_url=pushgateway,
            log_level="debug",
        )
        argv = [sys.executable, "-m", "stashlet.agent.cli", *invocation.args()]
        return in_mounts(argv, binds or {}, read_only)

    def env(self, pod: str, kubeconfig: Path, node: str | None = None) -> dict[str, str]:
        """The init-container's environment; ``node`` is its NODE_NAME (the downward API's, a DaemonSet's)."""
        return {
            **({"NODE_NAME": node} if node else {}),
            "PATH": os.environ["PATH"],
            "NAMESPACE": self.namespace,
            "POD_NAME": pod,
            "KUBECONFIG": str(kubeconfig),
            "STASHLET_RESTIC": self.restic_binary,
            agent_identity.ENV_STORAGE_SECRETS_DIR: str(self.storage_secrets),
            "HOME": str(self.tmp_path / f"stash-tmp-{pod}"),
        }

    def start(
        self,
        session: str,
        kind: str,
        workload: str,
        pod: str,
        kubeconfig: Path,
        node: str | None = None,
        **kwargs: Any,
    ) -> tuple[subprocess.Popen[bytes], Path]:
        self.runs += 1
        log = self.tmp_path / f"restore-{pod}-{self.runs}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(session, kind, workload, pod, **kwargs),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(pod, kubeconfig, node),
            )
        return process, log

    def run(
        self,
        session: str,
        kind: str,
        workload: str,
        pod: str,
        kubeconfig: Path,
        timeout: float = 120,
        **kwargs: Any,
    ) -> Run:
        process, log = self.start(session, kind, workload, pod, kubeconfig, **kwargs)
        return finish(process, log, timeout)


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> Run:
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"restore did not finish in {timeout}s:\n{log.read_text()[-4000:]}") from None
    return Run(code, log.read_text(errors="replace"))


def in_mounts(argv: list[str], binds: Mapping[Path, Path], read_only: Sequence[Path] = ()) -> list[str]:
    """``argv`` in a private mount namespace where each ``binds`` source is mounted at its target and the
    ``read_only`` paths are remounted read-only (``unshare --mount``, as root)."""
    if not binds and not read_only:
        return argv
    steps = [f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}" for dst, src in binds.items()]
    for path in read_only:
        quoted = shlex.quote(str(path))
        steps += [f"mount --bind {quoted} {quoted}", f"mount -o remount,bind,ro {quoted}"]
    script = " && ".join(steps) + ' && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *argv]


# --- trees ----------------------------------------------------------------------------------------


def write_tree(root: Path, seed: str = "") -> None:
    """Files of every kind restic keeps: content, modes, a symlink, an empty directory, a hard link."""
    (root / "dir" / "empty").mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_text(f"alpha {seed}\n")
    (root / "dir" / "b.bin").write_bytes(hashlib.sha256(seed.encode()).digest() * 10_000)
    (root / "dir" / "exec.sh").write_text(f"#!/bin/sh\necho {seed}\n")
    (root / "dir" / "exec.sh").chmod(0o750)
    (root / "private").mkdir(exist_ok=True)
    (root / "private" / "key").write_text(seed)
    (root / "private" / "key").chmod(0o600)
    (root / "private").chmod(0o700)
    (root / "link").symlink_to("a.txt")
    (root / "dir" / "hard").hardlink_to(root / "a.txt")
    root.chmod(0o750)


def manifest(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below ``root`` (and root itself): type, mode, mtime, and content or link target."""
    found: dict[str, tuple[Any, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        rel = str(path.relative_to(root))
        mode = info.st_mode & 0o7777
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", oct(mode), info.st_mtime_ns)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[rel] = ("file", oct(mode), info.st_mtime_ns, digest)
    return found


def wipe(root: Path) -> None:
    """Empty ``root`` (a volume's mount point stays)."""
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    root.chmod(0o755)


def pushed_metrics(url: str) -> dict[str, list[Any]]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend(family.samples)
    return out


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def env(
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    restic_binary: str,
    service_account_kubeconfig: Callable[[str, str], Path],
    template_repository: Path,
) -> RestoreEnv:
    """A namespace with the storage Secret and a local Repository holding an empty restic repository."""
    environment = RestoreEnv(
        kubectl, namespace, tmp_path, restic_binary, service_account_kubeconfig, template_repository
    )
    environment.apply(environment.secret(), environment.repository())
    return environment


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c.get("reason", "")) for c in status.get("conditions", [])}


def succeeded_anywhere(env: RestoreEnv, session: str) -> list[str]:
    """Everything about ``session`` that says Succeeded."""
    status = env.session(session).get("status", {})
    found = [f"phase {status['phase']}"] if status.get("phase") == "Succeeded" else []
    found += [f"host {s['hostname']}" for s in status.get("stats", []) if s.get("phase") == "Succeeded"]
    found += [e["reason"] for e in env.events(session) if "Succeeded" in e["reason"]]
    return found


# --- scenarios --------------------------------------------------------------------------------------


def test_deployment_restore_puts_back_exactly_what_was_backed_up(env: RestoreEnv, pushgateway: str) -> None:
    """Backed up as host-0, wiped, restored by the init-container: content, modes, times, symlink, hard
    link and empty directory come back byte for byte; the session is Succeeded with host stats,
    RestoreCompleted and MetricsPushed, events from "RestoreSession Controller", the Stash restore metrics
    on the Pushgateway, JSON logs naming the session and no secret; a second start is a no-op."""
    write_tree(env.data, "deploy")
    before = manifest(env.data)
    env.backup("host-0", env.data)
    wipe(env.data)
    env.apply(env.workload("Deployment", "app"), env.restore_session("rs", "Deployment", "app"))
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")

    run = env.run("rs", "Deployment", "app", "app-7d4b9-x1", kubeconfig, pushgateway=pushgateway)

    assert run.code == 0, run.log[-4000:]
    assert manifest(env.data) == before
    assert (env.data / "dir" / "hard").stat().st_ino == (env.data / "a.txt").stat().st_ino
    obj = env.session("rs")
    status = obj["status"]
    assert (status["phase"], status["totalHosts"]) == ("Succeeded", 1)
    assert [(s["hostname"], s["phase"]) for s in status["stats"]] == [("host-0", "Succeeded")]
    assert status["stats"][0]["duration"] and "error" not in status["stats"][0]
    assert status["sessionDuration"]
    assert conditions(status)["RestoreCompleted"] == ("True", "PostRestoreTasksExecuted")
    assert conditions(status)["MetricsPushed"] == ("True", "SuccessfullyPushedMetrics")
    events = [(e["type"], e["reason"], e["source"]["component"]) for e in env.events("rs")]
    assert sorted(events) == [
        ("Normal", "Host Restore Succeeded", "RestoreSession Controller"),
        ("Normal", "RestoreSessionSucceeded", "RestoreSession Controller"),
    ]
    pushed = pushed_metrics(pushgateway)
    job = f"restoresession-{env.namespace}-rs"
    for prefix in ("stash", "stash_appscode_com"):
        host = [s for s in pushed[f"{prefix}_restore_host_restore_success"] if s.labels["job"] == job]
        assert [(s.labels["hostname"], s.labels["host"], s.value) for s in host] == [
            ("host-0", "host-0", 1.0)
        ]
        assert host[0].labels["invoker_kind"] == "RestoreSession"
        assert host[0].labels["repository"] == REPOSITORY
        session = [s for s in pushed[f"{prefix}_restore_session_success"] if s.labels["job"] == job]
        assert [s.value for s in session] == [1.0]
        hosts = [s for s in pushed[f"{prefix}_restore_target_host_count_total"] if s.labels["job"] == job]
        assert [s.value for s in hosts] == [1.0]
    lines = run.lines()
    assert any(line.get("session") == f"{env.namespace}/rs" for line in lines)
    assert PASSWORD not in run.log
    lease = env.get("lease", names.lease_name("Deployment", "app", "restore"))
    assert not lease["spec"].get("holderIdentity")  # given back at the end

    version = obj["metadata"]["resourceVersion"]
    again = env.run("rs", "Deployment", "app", "app-7d4b9-x1", kubeconfig, pushgateway=pushgateway)
    assert again.code == 0, again.log[-4000:]
    assert any(line["msg"] == "restore already done for this host; nothing to do" for line in again.lines())
    assert env.session("rs")["metadata"]["resourceVersion"] == version
    assert manifest(env.data) == before
    assert len(env.events("rs")) == 2


def test_statefulset_hosts_each_restore_their_own_data_one_at_a_time(env: RestoreEnv) -> None:
    """A StatefulSet of 3: each pod (POD_NAME app-N, its own volume at the same mount path) restores host-N's
    snapshot, one host at a time through Lease lock-statefulset-app-restore; the session ends Succeeded
    with three host entries."""
    volumes = [env.tmp_path / f"vol-{i}" for i in range(3)]
    expected = []
    for i, volume in enumerate(volumes):
        volume.mkdir()
        write_tree(volume, f"host-{i}")
        expected.append(manifest(volume))
        env.backup(f"host-{i}", env.data, volume=volume)
        wipe(volume)
    assert sorted(s["hostname"] for s in env.snapshots()) == ["host-0", "host-1", "host-2"]
    env.apply(env.workload("StatefulSet", "app", 3), env.restore_session("rs", "StatefulSet", "app"))
    kubeconfig = env.grant("app-init", ["rs"], "StatefulSet", "app")

    started = [
        env.start("rs", "StatefulSet", "app", f"app-{i}", kubeconfig, binds={env.data: volume})
        for i, volume in enumerate(volumes)
    ]
    runs = [finish(process, log, timeout=180) for process, log in started]

    for i, run in enumerate(runs):
        assert run.code == 0, run.log[-4000:]
        assert manifest(volumes[i]) == expected[i], f"host-{i}"
    assert list(env.data.iterdir()) == []  # every pod wrote into its own volume only
    status = env.session("rs")["status"]
    assert (status["phase"], status["totalHosts"]) == ("Succeeded", 3)
    assert sorted((s["hostname"], s["phase"]) for s in status["stats"]) == [
        ("host-0", "Succeeded"),
        ("host-1", "Succeeded"),
        ("host-2", "Succeeded"),
    ]
    turns = []
    for run in runs:
        lines = run.lines()
        took = next(line["time"] for line in lines if line["msg"] == "took the restore turn")
        recorded = next(line["time"] for line in lines if line["msg"] == "host restore recorded")
        turns.append((took, recorded))
    turns.sort()
    for (_, end), (start, _) in itertools.pairwise(turns):
        assert end <= start, f"turns overlap: {turns}"


def test_deployment_replicas_restore_host_0_once(env: RestoreEnv) -> None:
    """Two replicas of a Deployment (both host-0, one shared volume) start together: one restores, the other
    finds host-0 done when its turn comes; both exit 0 and the session has one host entry."""
    write_tree(env.data, "shared")
    before = manifest(env.data)
    env.backup("host-0", env.data)
    wipe(env.data)
    env.apply(env.workload("Deployment", "app", 2), env.restore_session("rs", "Deployment", "app"))
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")

    started = [env.start("rs", "Deployment", "app", f"app-5c9-{i}", kubeconfig) for i in range(2)]
    runs = [finish(process, log) for process, log in started]

    assert [run.code for run in runs] == [0, 0], [run.log[-2000:] for run in runs]
    restored = [run for run in runs if any(line["msg"] == "path restored" for line in run.lines())]
    assert len(restored) == 1
    assert manifest(env.data) == before
    status = env.session("rs")["status"]
    assert [(s["hostname"], s["phase"]) for s in status["stats"]] == [("host-0", "Succeeded")]
    assert [e["reason"] for e in env.events("rs")].count("Host Restore Succeeded") == 1


def test_restore_into_another_workload_takes_the_source_hosts_data(env: RestoreEnv) -> None:
    """A Deployment "recovered" (host-0) with rule sourceHost host-1 gets host-1's data into its own volume,
    mounted at the backed-up path; the original location is not touched."""
    for i in range(2):
        volume = env.tmp_path / f"app-{i}"
        volume.mkdir()
        write_tree(volume, f"app-host-{i}")
        env.backup(f"host-{i}", env.data, volume=volume)
    expected = manifest(env.tmp_path / "app-1")
    recovered = env.tmp_path / "recovered"
    recovered.mkdir()
    env.apply(
        env.workload("Deployment", "recovered"),
        env.restore_session(
            "rs", "Deployment", "recovered", rules=[{"sourceHost": "host-1", "paths": [str(env.data)]}]
        ),
    )
    kubeconfig = env.grant("recovered-init", ["rs"], "Deployment", "recovered")

    run = env.run("rs", "Deployment", "recovered", "recovered-6f7-q", kubeconfig, binds={env.data: recovered})

    assert run.code == 0, run.log[-4000:]
    assert manifest(recovered) == expected
    assert list(env.data.iterdir()) == []
    status = env.session("rs")["status"]
    assert (status["phase"], [(s["hostname"], s["phase"]) for s in status["stats"]]) == (
        "Succeeded",
        [("host-0", "Succeeded")],
    )


def test_rule_paths_include_and_exclude_select_what_comes_back(env: RestoreEnv) -> None:
    """One snapshot of two paths: a rule with ``paths`` restores only that path; ``include`` (absolute, as
    Stash documents it) only the matching subtree; ``exclude`` everything but the matches."""
    other = env.tmp_path / "other"
    other.mkdir()
    write_tree(env.data, "one")
    (other / "o.txt").write_text("other\n")
    full = manifest(env.data)
    argv = [env.restic_binary, "--no-cache", "backup", "--host=host-0", "--", str(env.data), str(other)]
    subprocess.run(argv, env=env.restic_env(), check=True, capture_output=True, timeout=120)
    wipe(env.data)
    wipe(other)
    sessions = {
        "only-other": [{"paths": [str(other)]}],
        "include-dir": [{"paths": [str(env.data), str(other)], "include": [f"{env.data}/dir"]}],
        "exclude-bin": [{"snapshots": ["latest"], "exclude": ["*.bin"]}],
    }
    env.apply(
        env.workload("Deployment", "app"),
        *(
            env.restore_session(n, "Deployment", "app", rules=r, mounts=[env.data, other])
            for n, r in sessions.items()
        ),
    )
    kubeconfig = env.grant("app-init", list(sessions), "Deployment", "app")
    found: dict[str, tuple[set[str], set[str]]] = {}
    for name in sessions:
        run = env.run(name, "Deployment", "app", "app-1", kubeconfig)
        assert run.code == 0, run.log[-4000:]
        assert env.session(name)["status"]["phase"] == "Succeeded"
        found[name] = (set(manifest(env.data)) - {"."}, set(manifest(other)) - {"."})
        wipe(env.data)
        wipe(other)
    everything = set(full) - {"."}
    assert found["only-other"] == (set(), {"o.txt"})
    assert found["include-dir"] == ({p for p in everything if p.startswith("dir")}, set())
    assert found["exclude-bin"] == (everything - {"dir/b.bin"}, {"o.txt"})


# --- failures ---------------------------------------------------------------------------------------

FAULTS = {
    "snapshot-missing": ("SnapshotNotFound", "deadbeef"),
    "wrong-password": ("WrongPassword", "wrong password"),
    "target-read-only": ("TargetNotWritable", "not writable"),
    "restic-cannot-write": ("ResticFailed", "read-only file system"),
    "repository-object-missing": ("RepositoryNotFound", f"Repository {{ns}}/{REPOSITORY} not found"),
    "repository-missing-in-backend": ("RepositoryNotFound", "repository does not exist"),
    "snapshots-and-paths": ("InvalidRestoreRule", "spec.target.rules[0]: snapshots and paths"),
    "no-rules": ("InvalidRestoreRule", "spec.target.rules: no rule, so nothing would be restored"),
    "rule-naming-nothing": ("InvalidRestoreRule", "spec.target.rules[0]: neither paths nor snapshots"),
    "path-not-mounted": ("TargetPathNotMounted", "volumeMounts"),
    "session-for-another-workload": ("RestoreTargetMismatch", "Deployment/other"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_restore_exits_non_zero_and_says_why(env: RestoreEnv, fault: str) -> None:
    """Each fault: the init-container exits non-zero, the host entry is Failed with the reason and a message
    naming what is wrong, the session Failed, a Warning "Host Restore Failed" event; nothing says Succeeded
    and no secret is shown."""
    reason, text = FAULTS[fault]
    write_tree(env.data, fault)
    snapshot = env.backup("host-0", env.data)
    wipe(env.data)
    rules: list[dict[str, Any]] | None = None
    mounts: list[Path] | None = None
    read_only: list[Path] = []
    if fault == "snapshot-missing":
        rules = [{"snapshots": ["deadbeef"]}]
    elif fault == "wrong-password":
        env.apply(env.secret("another password entirely"))
    elif fault == "target-read-only":
        read_only = [env.data]
    elif fault == "restic-cannot-write":
        (env.data / "dir").mkdir()
        read_only = [env.data / "dir"]
    elif fault == "repository-object-missing":
        env.kubectl("delete", "repository", REPOSITORY, "-n", env.namespace)
    elif fault == "repository-missing-in-backend":
        shutil.rmtree(env.repo_dir)
        env.repo_dir.mkdir()
    elif fault == "snapshots-and-paths":
        rules = [{"snapshots": [snapshot[:8]], "paths": [str(env.data)]}]
    elif fault == "no-rules":
        rules = []
    elif fault == "rule-naming-nothing":
        rules = [{"sourceHost": "host-0", "include": ["*.txt"]}]
    elif fault == "path-not-mounted":
        mounts = [env.tmp_path / "elsewhere"]
        mounts[0].mkdir()
    workload = "other" if fault == "session-for-another-workload" else "app"
    env.apply(
        env.workload("Deployment", "app"),
        env.restore_session("rs", "Deployment", workload, rules=rules, mounts=mounts),
    )
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")

    run = env.run("rs", "Deployment", "app", "app-1", kubeconfig, read_only=read_only)

    assert run.code != 0, run.log[-4000:]
    status = env.session("rs")["status"]
    assert status["phase"] == "Failed"
    host = status["stats"][0]
    assert (host["hostname"], host["phase"]) == ("host-0", "Failed")
    assert host["error"].startswith(f"{reason}: "), host["error"]
    assert text.format(ns=env.namespace) in host["error"], host["error"]
    assert succeeded_anywhere(env, "rs") == []
    failed = [e for e in env.events("rs") if e["reason"] == "Host Restore Failed"]
    assert [e["type"] for e in failed] == ["Warning"]
    assert reason in failed[0]["message"]
    for secret in (PASSWORD, "another password entirely"):
        assert secret not in run.log
        assert secret not in json.dumps(status)


def test_a_failed_host_is_restored_again_after_the_fix(env: RestoreEnv) -> None:
    """Failed (wrong password), then the Secret is fixed and the pod restarts: the second start restores,
    replaces the host's Failed entry, and the session turns Succeeded."""
    write_tree(env.data, "retry")
    before = manifest(env.data)
    env.backup("host-0", env.data)
    wipe(env.data)
    env.apply(
        env.secret("not the password"),
        env.workload("Deployment", "app"),
        env.restore_session("rs", "Deployment", "app"),
    )
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")
    first = env.run("rs", "Deployment", "app", "app-1", kubeconfig)
    assert first.code != 0
    assert env.session("rs")["status"]["phase"] == "Failed"

    env.apply(env.secret())
    second = env.run("rs", "Deployment", "app", "app-1", kubeconfig)

    assert second.code == 0, second.log[-4000:]
    assert manifest(env.data) == before
    status = env.session("rs")["status"]
    assert status["phase"] == "Succeeded"
    assert [(s["hostname"], s["phase"], s.get("error")) for s in status["stats"]] == [
        ("host-0", "Succeeded", None)
    ]
    reasons = sorted(e["reason"] for e in env.events("rs"))
    assert reasons == [
        "Host Restore Failed",
        "Host Restore Succeeded",
        "RestoreSessionFailed",
        "RestoreSessionSucceeded",
    ]


def test_a_session_deleted_while_waiting_for_the_turn_fails_the_start(env: RestoreEnv) -> None:
    """Without its RestoreSession the init-container exits non-zero: when it never existed, and when it is
    deleted while the init-container waits for the Lease (held by another pod); nothing is restored."""
    write_tree(env.data, "gone")
    env.backup("host-0", env.data)
    wipe(env.data)
    env.apply(env.workload("Deployment", "app"), env.restore_session("rs", "Deployment", "app"))
    kubeconfig = env.grant("app-init", ["rs", "never-created"], "Deployment", "app")

    missing = env.run("never-created", "Deployment", "app", "app-1", kubeconfig)
    assert missing.code != 0
    assert any(line["msg"].startswith("RestoreSession not found") for line in missing.lines())

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    env.apply(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": names.lease_name("Deployment", "app", "restore"),
                "namespace": env.namespace,
            },
            "spec": {
                "holderIdentity": "app-other",
                "leaseDurationSeconds": 600,
                "renewTime": now,
                "acquireTime": now,
            },
        }
    )
    process, log = env.start("rs", "Deployment", "app", "app-1", kubeconfig)
    wait_until(
        lambda: "waiting for the restore turn" in log.read_text(),
        timeout=60,
        what="the restore to wait for its turn",
    )
    env.kubectl("delete", "restoresession", "rs", "-n", env.namespace)
    run = finish(process, log, timeout=30)

    assert run.code != 0
    assert any(line["msg"].startswith("RestoreSession not found") for line in run.lines())
    assert list(env.data.iterdir()) == []


def test_progress_is_logged_and_sigterm_interrupts_cleanly(env: RestoreEnv) -> None:
    """A slow restore logs restic's progress (naming the session); SIGTERM mid-restore stops restic without
    leaving a lock, records the host Failed with reason Interrupted, and exits 143."""
    (env.data / "big.bin").write_bytes(os.urandom(40 * 1024 * 1024))
    env.backup("host-0", env.data)
    wipe(env.data)
    env.apply(
        env.workload("Deployment", "app"),
        env.restore_session("rs", "Deployment", "app", args=["--limit-download=4096"]),
    )
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")
    process, log = env.start("rs", "Deployment", "app", "app-1", kubeconfig)

    def progress() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return [line for line in lines if line["msg"] == "restore progress"]

    wait_until(progress, timeout=60, what="restore progress in the log")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    run = finish(process, log, timeout=40)

    assert run.code == 143, run.log[-4000:]
    assert time.monotonic() - started < 20
    first = progress()[0]
    assert first["session"] == f"{env.namespace}/rs"
    assert first["totalBytes"] > 0 and "percentDone" in first
    host = env.session("rs")["status"]["stats"][0]
    assert (host["phase"], host["error"].split(":")[0]) == ("Failed", "Interrupted")
    locks = subprocess.run(
        [env.restic_binary, "--no-cache", "list", "locks", "--no-lock"],
        env=env.restic_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert locks == []


def test_an_unreachable_pushgateway_does_not_fail_the_restore(env: RestoreEnv) -> None:
    """With the Pushgateway down the restore still Succeeds and exits 0; MetricsPushed=False names the
    gateway, with a Warning event."""
    write_tree(env.data, "nogw")
    env.backup("host-0", env.data)
    wipe(env.data)
    env.apply(env.workload("Deployment", "app"), env.restore_session("rs", "Deployment", "app"))
    kubeconfig = env.grant("app-init", ["rs"], "Deployment", "app")
    gateway = f"http://127.0.0.1:{free_port()}"

    run = env.run("rs", "Deployment", "app", "app-1", kubeconfig, pushgateway=gateway)

    assert run.code == 0, run.log[-4000:]
    status = env.session("rs")["status"]
    assert status["phase"] == "Succeeded"
    pushed = next(c for c in status["conditions"] if c["type"] == "MetricsPushed")
    assert (pushed["status"], pushed["reason"]) == ("False", "FailedToPushMetrics")
    assert "127.0.0.1" in pushed["message"]
    assert any(e["reason"] == "MetricsPushFailed" and e["type"] == "Warning" for e in env.events("rs"))
