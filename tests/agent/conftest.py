"""Fixtures for the agent's tests: the pinned restic binary and local repositories under tmp_path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.kubeconfigs import token_kubeconfig
from tests.polling import wait_until

from stashlet.agent.restic.backend import ResticRepository, build_repository
from stashlet.agent.restic.runner import Restic, ResticSettings
from stashlet.api import versions
from stashlet.api.agent_contract import AgentInvocation
from stashlet.localcluster import tools
from stashlet.localcluster.processes import free_port

PASSWORD = "correct horse battery staple"


def restic_path() -> Path:
    """Where the pinned restic is: ``$STASHLET_RESTIC``, else the tool cache (``~/.cache/stashlet``)."""
    override = os.environ.get("STASHLET_RESTIC")
    if override:
        return Path(override)
    return tools.tool_dir(tools.RESTIC) / "restic"


@pytest.fixture(scope="session")
def restic_binary() -> str:
    """The restic binary the tests run; fails (never skips) when it is not there."""
    path = restic_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"restic {versions.RESTIC} not found at {path}: run `stashlet-cluster install-tools` "
            "or point STASHLET_RESTIC at a restic binary"
        )
    return str(path)


@pytest.fixture
def settings(restic_binary: str) -> ResticSettings:
    """Runner settings for tests: no cache, no lock retries, fast progress."""
    return ResticSettings(
        binary=restic_binary, progress_fps=10.0, progress_interval=0.2, interrupt_grace=20.0
    )


def local_repository(path: Path, password: str = PASSWORD) -> ResticRepository:
    """A local-directory repository at ``path`` built through the Stash backend wire form."""
    backend = {"local": {"mountPath": str(path.parent), "subPath": path.name}, "storageSecretName": "s"}
    secret = {"RESTIC_PASSWORD": password.encode()}
    return build_repository(backend, secret, files_dir=str(path.parent / "files"))


@pytest.fixture
def repository(tmp_path: Path) -> ResticRepository:
    """A (not yet initialised) local repository in this test's tmp_path."""
    return local_repository(tmp_path / "repo")


@pytest.fixture
def restic(settings: ResticSettings, repository: ResticRepository) -> Restic:
    """A runner bound to the test's repository (not initialised)."""
    return Restic(settings, repository)


@pytest.fixture(scope="session")
def template_repository(restic_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository initialised per session (``restic init`` takes seconds: it calibrates its KDF)."""
    path = tmp_path_factory.mktemp("template") / "repo"
    env = dict(local_repository(path).env)
    subprocess.run([restic_binary, "--no-cache", "--quiet", "init"], env=env, check=True, timeout=120)
    return path


@pytest.fixture
def initialized(settings: ResticSettings, template_repository: Path, tmp_path: Path) -> Restic:
    """A runner bound to an empty initialised repository of its own (a copy of the template)."""
    shutil.copytree(template_repository, tmp_path / "repo")
    return Restic(settings, local_repository(tmp_path / "repo"))


# --------------------------------------------------------------------------------------------
# The agent as a process, with its own service account's token (RBAC as the operator grants it).


@dataclass
class AgentProcess:
    """A running ``stashlet-agent`` and where to reach it."""

    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def wait_http(url: str, timeout: float = 30, process: AgentProcess | None = None) -> None:
    """Wait until ``url`` answers 200; fail at once (with the log) if ``process`` exits meanwhile."""

    def ok() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if process is not None and process.popen.poll() is not None:
            pytest.fail(f"agent exited with {process.popen.returncode}:\n{process.logs()[-4000:]}")
        return False

    wait_until(ok, timeout=timeout, what=f"{url} to answer 200", log=process.logs if process else None)


@pytest.fixture
def service_account_kubeconfig(
    control_plane: Any, kubectl: Any, tmp_path: Path
) -> Callable[[str, str], Path]:
    """Create a ServiceAccount and a kubeconfig holding a token of it (TokenRequest), never the admin's."""

    def make(namespace: str, name: str) -> Path:
        kubectl("create", "serviceaccount", name, "-n", namespace, check=False)
        token = kubectl("create", "token", name, "-n", namespace, "--duration=2h").stdout.strip()
        return token_kubeconfig(control_plane, token, tmp_path / f"kubeconfig-{namespace}-{name}", namespace)

    return make


@pytest.fixture
def start_agent(tmp_path: Path, restic_binary: str) -> Iterator[Callable[..., AgentProcess]]:
    """Start ``stashlet-agent sidecar`` processes as a pod would run them; all are stopped afterwards."""
    started: list[AgentProcess] = []

    def start(
        *,
        namespace: str,
        invoker: str,
        target_kind: str,
        target_name: str,
        pod_name: str,
        kubeconfig: Path,
        pushgateway_url: str | None = None,
        node_name: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> AgentProcess:
        port = free_port()
        tmp_dir = tmp_path / f"agent-{pod_name}"
        tmp_dir.mkdir(exist_ok=True)
        invocation = AgentInvocation(
            mode="sidecar",
            invoker_kind="BackupConfiguration",
            invoker_name=invoker,
            target_kind=target_kind,
            target_name=target_name,
            status_port=port,
            tmp_dir=str(tmp_dir),
            pushgateway_url=pushgateway_url,
            log_level="debug",
        )
        env = {
            "PATH": os.environ["PATH"],
            "NAMESPACE": namespace,
            "POD_NAME": pod_name,
            "KUBECONFIG": str(kubeconfig),
            "STASHLET_RESTIC": restic_binary,
            "HOME": str(tmp_dir),
            **({"NODE_NAME": node_name} if node_name else {}),
            **(extra_env or {}),
        }
        log = tmp_path / f"agent-{pod_name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "stashlet.agent.cli", *invocation.args(), "--listen-host=127.0.0.1"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        process = AgentProcess(popen, port, log)
        started.append(process)
        wait_http(f"{process.url}/readyz", process=process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL, timeout=10)


@pytest.fixture
def broken_api_group(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], api_discovery: None
) -> Iterator[str]:
    """An APIService for a group whose Service does not exist: its discovery answers 503. Removed right
    after the test: while it exists, namespace deletion and garbage collection wait."""
    group = f"broken-{uuid.uuid4().hex[:8]}.example.com"
    kubectl(
        "apply",
        "-f",
        "-",
        input_obj={
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"v1.{group}"},
            "spec": {
                "group": group,
                "version": "v1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "insecureSkipTLSVerify": True,
                "service": {"name": "nowhere", "namespace": "default", "port": 443},
            },
        },
    )
    try:
        wait_until(
            lambda: group in kubectl("get", "--raw", "/apis").stdout,
            what=f"API group {group} listed in /apis",
            timeout=30,
            interval=0.3,
        )
        yield f"{group}/v1"
    finally:
        kubectl("delete", "apiservice", f"v1.{group}", "--wait=true", check=False)
