"""The sidecar learns its retention scope at start (one ``restic snapshots --no-lock`` once its watch has
listed), so its first session runs one restic process when the policy removes nothing; a backend that is
dead at start leaves the scope unknown and the first session backs up and forgets as before. Real API
server, real restic, real REST server, the agent as its own account."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.agent.backup.test_sidecar import (
    PASSWORD,
    Setup,
    finished_lines,
    get,
    log_lines,
    wait_phase,
    write_tree,
)
from tests.agent.restic.test_backend_failures import REST_PASSWORD, USER, RestServer
from tests.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.restic]


def retention_message(kubectl: Callable[..., Any], namespace: str, session: str) -> str:
    conditions = get(kubectl, "backupsession", session, "-n", namespace)["status"]["conditions"]
    message: str = {c["type"]: c for c in conditions}["RetentionPolicyApplied"]["message"]
    return message


def snapshot_count(run: Callable[..., subprocess.CompletedProcess[str]]) -> int:
    return len(json.loads(run("snapshots", "--no-lock", "--json").stdout))


def test_a_fresh_sidecar_lists_its_scope_so_its_first_session_runs_only_the_backup(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """Two snapshots of host-0 exist before the sidecar starts; it lists them in the background, and
    keepLast 5 over them and the first session's own removes nothing: the session's only restic process
    is its backup. With keepLast 3 (policy changed, nothing listed again) the next session forgets one."""
    setup = Setup(
        kubectl, namespace, tmp_path, retention={"name": "keep-last-5", "keepLast": 5, "prune": False}
    )
    write_tree(setup.data)
    setup.apply()

    def restic(*args: str) -> subprocess.CompletedProcess[str]:
        return setup.restic(*args, restic_binary=restic_binary)

    restic("init")
    for _ in range(2):
        restic("backup", "--host=host-0", str(setup.data))
    restic("backup", "--host=host-1", str(setup.data))  # another host's: outside this scope
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    listed = wait_until(
        lambda: log_lines(agent.logs(), "retention scope listed"),
        what="the retention scope listed",
        timeout=60,
        log=agent.logs,
    )
    assert len(listed) == 1
    assert (listed[0]["snapshots"], listed[0]["host"]) == (2, "host-0")
    assert listed[0]["repository"] == f"{namespace}/local-repo"
    assert listed[0]["seconds"] >= listed[0]["restic_seconds"] > 0
    assert not log_lines(agent.logs(), "retention scope not listed")

    first = wait_phase(kubectl, namespace, setup.session("first"), {"Succeeded", "Failed"})
    assert first["status"]["phase"] == "Succeeded", (first["status"], agent.logs()[-3000:])
    assert "kept 3, removed 0 (restic forget not run" in retention_message(kubectl, namespace, "first")
    finished = {line["session"]: line for line in finished_lines(agent.logs())}
    assert finished[f"{namespace}/first"]["restic_processes"] == 1  # the backup alone
    assert snapshot_count(restic) == 4

    setup.patch_configuration({"retentionPolicy": {"name": "keep-last-3", "keepLast": 3, "prune": False}})
    second = wait_phase(kubectl, namespace, setup.session("second"), {"Succeeded", "Failed"})
    assert second["status"]["phase"] == "Succeeded", (second["status"], agent.logs()[-3000:])
    message = retention_message(kubectl, namespace, "second")
    assert "kept 3, removed 1" in message and "not run" not in message
    finished = {line["session"]: line for line in finished_lines(agent.logs())}
    assert finished[f"{namespace}/second"]["restic_processes"] == 2  # backup, forget
    assert snapshot_count(restic) == 4  # host-0: the three newest; host-1's untouched
    assert len(log_lines(agent.logs(), "retention scope listed")) == 1


class RestSetup:
    """A REST server holding two snapshots of host-0, the Setup over it, and restic on it (CLI)."""

    def __init__(self, kubectl: Callable[..., Any], namespace: str, tmp_path: Path, restic_binary: str):
        self.server = RestServer(tmp_path / "rest")
        self.server.start()
        self.restic_binary = restic_binary
        url = f"http://127.0.0.1:{self.server.port}/repo"
        self.setup = Setup(kubectl, namespace, tmp_path, backend={"rest": {"url": url}})
        write_tree(self.setup.data)
        self.setup.apply(
            {"RESTIC_PASSWORD": PASSWORD, "REST_SERVER_USERNAME": USER, "REST_SERVER_PASSWORD": REST_PASSWORD}
        )
        self.restic("init")
        for _ in range(2):
            self.restic("backup", "--host=host-0", str(self.setup.data))

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "RESTIC_REPOSITORY": f"rest:http://{USER}:{REST_PASSWORD}@127.0.0.1:{self.server.port}/repo",
            "RESTIC_PASSWORD": PASSWORD,
        }
        return subprocess.run(
            [self.restic_binary, "--no-cache", *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )

    def restart_server(self) -> None:
        self.server.start()
        wait_until(lambda: _answers(self.server.port), what="the REST server back")


@pytest.fixture
def rest_setup(
    kubectl: Callable[..., Any], namespace: str, tmp_path: Path, restic_binary: str
) -> Iterator[RestSetup]:
    made = RestSetup(kubectl, namespace, tmp_path, restic_binary)
    try:
        yield made
    finally:
        made.server.stop()


def test_a_dead_backend_at_start_leaves_the_scope_unknown_and_the_first_session_forgets(
    kubectl: Callable[..., Any],
    namespace: str,
    rest_setup: RestSetup,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """The REST server is down when the sidecar starts: the sidecar is ready all the same, its listing
    is given up (logged, naming the configuration, the Repository and the backend), and once the server
    is back the first session backs up and runs forget, as a sidecar without a warm-up would."""
    setup, server = rest_setup.setup, rest_setup.server
    server.stop()
    agent = start_agent(  # waits for /readyz: the dead backend does not hold readiness back
        namespace=namespace,
        invoker="app-backup",
        target_kind="Deployment",
        target_name="app",
        pod_name="app-x",
        kubeconfig=service_account_kubeconfig(namespace, setup.account),
        extra_env={**setup.agent_env(), "STASHLET_BACKEND_GIVE_UP_AFTER": "2s"},
    )
    given_up = wait_until(
        lambda: log_lines(agent.logs(), "retention scope not listed"),
        what="the retention scope's listing given up",
        timeout=60,
        log=agent.logs,
    )
    assert given_up[0]["level"] == "warning"
    assert given_up[0]["invoker"] == f"BackupConfiguration {namespace}/app-backup"
    assert given_up[0]["repository"] == f"Repository {namespace}/local-repo"
    assert "unreachable" in given_up[0]["why"] and f"127.0.0.1:{server.port}" in given_up[0]["why"]
    assert REST_PASSWORD not in agent.logs() and PASSWORD not in agent.logs()
    assert not log_lines(agent.logs(), "retention scope listed")

    rest_setup.restart_server()
    first = wait_phase(kubectl, namespace, setup.session("first"), {"Succeeded", "Failed"})
    assert first["status"]["phase"] == "Succeeded", (first["status"], agent.logs()[-3000:])
    message = retention_message(kubectl, namespace, "first")
    assert "kept 3, removed 0" in message and "not run" not in message
    finished = {line["session"]: line for line in finished_lines(agent.logs())}
    assert finished[f"{namespace}/first"]["restic_processes"] == 2  # backup, forget
    assert snapshot_count(rest_setup.restic) == 3


def test_a_session_does_not_wait_for_the_warm_up(
    kubectl: Callable[..., Any],
    namespace: str,
    rest_setup: RestSetup,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    """A session arriving while the listing still waits on a dead backend (restic retrying, the bound
    far off) cancels it before its own restic starts; the session backs up and forgets once the server
    is back, and nothing is listed afterwards."""
    setup, server = rest_setup.setup, rest_setup.server
    server.stop()
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    wait_until(
        lambda: log_lines(
            agent.logs(), "backend unreachable while listing the retention scope, restic retries"
        ),
        what="the listing retrying a dead backend",
        timeout=60,
        log=agent.logs,
    )
    setup.session("first")
    cancelled = wait_until(
        lambda: log_lines(agent.logs(), "warm-up cancelled"), what="the warm-up cancelled", log=agent.logs
    )
    assert cancelled[0]["why"] == "session first begins"
    rest_setup.restart_server()
    first = wait_phase(kubectl, namespace, "first", {"Succeeded", "Failed"})
    assert first["status"]["phase"] == "Succeeded", (first["status"], agent.logs()[-3000:])
    finished = {line["session"]: line for line in finished_lines(agent.logs())}
    assert finished[f"{namespace}/first"]["restic_processes"] == 2  # backup, forget
    logs = agent.logs()
    assert logs.index('"warm-up cancelled"') < logs.index('"host backup started"')
    assert not log_lines(logs, "retention scope listed") and not log_lines(logs, "retention scope not listed")
    assert snapshot_count(rest_setup.restic) == 3


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
