"""The sidecar asks the API server for its own configuration's sessions only (real API server, real
restic, an agent process with the configuration's own account): it receives no event of another
configuration's sessions, and runs its own, hand-made ones without labels too. Where the server cannot
select by ``spec.invoker`` (a BackupSession CRD without ``selectableFields``) it says so and watches the
namespace's sessions, still running only its own."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from tests.agent.backup.test_sidecar import Setup, log_lines, wait_phase, write_tree
from tests.kubeconfigs import token_kubeconfig

from stashlet.localcluster.controlplane import ControlPlane

if TYPE_CHECKING:
    from tests.agent.conftest import AgentProcess

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

EVENT = "backup session event"
"""The agent's debug line for every BackupSession watch event it receives, before it looks at it."""
GROUP = "stash.appscode.com"
FALLBACK = "the API server cannot select by these fields; listing the wider collection and selecting here"


def session(namespace: str, name: str, invoker: str, *, labelled: bool) -> dict[str, Any]:
    """A BackupSession as a user writes it by hand (no labels), or as Stash's CronJob does (labelled)."""
    labels = (
        {"stash.appscode.com/invoker-type": "BackupConfiguration", "stash.appscode.com/invoker-name": invoker}
        if labelled
        else {}
    )
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"invoker": {"apiGroup": GROUP, "kind": "BackupConfiguration", "name": invoker}},
    }


def others(namespace: str, prefix: str) -> list[dict[str, Any]]:
    """Two sessions of each of three other configurations, one labelled and one not."""
    pairs = [(c, i) for c in range(3) for i in range(2)]
    return [session(namespace, f"{prefix}-{c}-{i}", f"other-{c}", labelled=i == 0) for c, i in pairs]


def received(agent: AgentProcess) -> dict[str, int]:
    """The sessions whose watch events the agent received, with how many each."""
    counts: dict[str, int] = {}
    for line in log_lines(agent.logs(), EVENT):
        counts[line["session"]] = counts.get(line["session"], 0) + 1
    return counts


def test_an_agent_receives_only_its_own_configurations_sessions(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., AgentProcess],
    service_account_kubeconfig: Callable[[str, str], Path],
    restic_binary: str,
) -> None:
    """Six sessions of three other configurations before the agent starts and six while it runs: it
    receives no event of any of them; its own session made by hand without labels, and one labelled as
    Stash's CronJob labels them, both Succeed; no warning about the selection."""
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    kubectl("apply", "-f", "-", input_obj=others(namespace, "before"))
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))
    kubectl("apply", "-f", "-", input_obj=session(namespace, "by-hand", "app-backup", labelled=False))
    kubectl("apply", "-f", "-", input_obj=others(namespace, "during"))
    by_hand = wait_phase(kubectl, namespace, "by-hand", {"Succeeded", "Failed"})
    assert by_hand["status"]["phase"] == "Succeeded", (by_hand["status"], agent.logs()[-3000:])
    kubectl("apply", "-f", "-", input_obj=session(namespace, "labelled", "app-backup", labelled=True))
    labelled = wait_phase(kubectl, namespace, "labelled", {"Succeeded", "Failed"})
    assert labelled["status"]["phase"] == "Succeeded", (labelled["status"], agent.logs()[-3000:])

    counts = received(agent)
    assert set(counts) == {f"{namespace}/by-hand", f"{namespace}/labelled"}, counts
    assert all(n >= 2 for n in counts.values()), counts  # created, then its status written
    assert not log_lines(agent.logs(), FALLBACK)
    for other in kubectl("get", "backupsessions", "-n", namespace, "-o", "name").stdout.split():
        if "other" in other or "before" in other or "during" in other:
            status = kubectl("get", other, "-n", namespace, "-o", "jsonpath={.status}").stdout
            assert not status, (other, status)  # nobody ran them


def test_without_selectable_fields_the_agent_watches_its_namespace_and_runs_its_own(
    plane_without_selectable_fields: ControlPlane,
    tmp_path: Path,
    start_agent: Callable[..., AgentProcess],
    restic_binary: str,
) -> None:
    """The API server refuses the field selector (400): the agent logs a warning naming the collection and
    the selector (for its start-up sweep and for its watch), receives the namespace's sessions, runs its
    own hand-made one and leaves the others alone."""
    plane = plane_without_selectable_fields

    def kubectl(*args: str, input_obj: Any = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        objs = input_obj if isinstance(input_obj, list) or input_obj is None else [input_obj]
        text = yaml.safe_dump_all(objs, sort_keys=False) if objs is not None else None
        return plane.kubectl(*args, input_text=text, check=check)

    namespace = "fallback"
    kubectl("create", "namespace", namespace)
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    kubectl("create", "serviceaccount", setup.account, "-n", namespace, check=False)
    token = kubectl("create", "token", setup.account, "-n", namespace, "--duration=2h").stdout.strip()
    kubeconfig = token_kubeconfig(plane, token, tmp_path / "kubeconfig-agent", namespace)
    kubectl("apply", "-f", "-", input_obj=others(namespace, "before"))
    agent = setup.start_agent(start_agent, kubeconfig)

    kubectl("apply", "-f", "-", input_obj=session(namespace, "by-hand", "app-backup", labelled=False))
    done = wait_phase(kubectl, namespace, "by-hand", {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", (done["status"], agent.logs()[-3000:])

    warnings = log_lines(agent.logs(), FALLBACK)
    assert len(warnings) == 2, warnings  # the sweep's list and the watch, once each
    for warning in warnings:
        assert warning["level"] == "warning"
        assert warning["path"] == f"/apis/{GROUP}/v1beta1/namespaces/{namespace}/backupsessions"
        assert warning["fieldSelector"] == (
            "spec.invoker.kind=BackupConfiguration,spec.invoker.name=app-backup"
        )
        assert "field label not supported" in warning["error"]
    counts = received(agent)
    assert {f"{namespace}/{o['metadata']['name']}" for o in others(namespace, "before")} <= set(counts)
    for other in others(namespace, "before"):
        name = other["metadata"]["name"]
        status = kubectl("get", "backupsession", name, "-n", namespace, "-o", "jsonpath={.status}").stdout
        assert not status, (name, status)  # received, not run
