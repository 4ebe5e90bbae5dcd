"""restic check on a Repository's own cadence, end to end: real API server, real restic, an agent process.

A bad annotation is refused by name (a condition on the session, a Warning event on the Repository) and
the backup still runs; ``check-interval: 0s`` checks after every backup, reading the subset asked; a
damaged repository fails its check as loudly as ever: integrity false on the Repository, Warning events
on the Repository and the session, the integrity gauge 0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.agent.backup.test_sidecar import (
    Setup,
    condition_once,
    events_for,
    metrics_from,
    repository_once,
    wait_phase,
    write_tree,
)
from tests.polling import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.restic]

INTERVAL = "stash.appscode.com/check-interval"
SUBSET = "stash.appscode.com/check-read-data-subset"


def test_checks_follow_the_repository_annotations_and_a_damaged_repository_is_loud(
    kubectl: Callable[..., Any],
    namespace: str,
    tmp_path: Path,
    start_agent: Callable[..., Any],
    service_account_kubeconfig: Callable[[str, str], Path],
) -> None:
    setup = Setup(kubectl, namespace, tmp_path)
    write_tree(setup.data)
    setup.apply()
    kubectl("annotate", "repository", "local-repo", "-n", namespace, f"{INTERVAL}=daily")
    agent = setup.start_agent(start_agent, service_account_kubeconfig(namespace, setup.account))

    # A value that is no duration: refused by name; the backup runs, the check does not.
    refused = wait_phase(kubectl, namespace, setup.session("refused"), {"Succeeded", "Failed"})
    assert refused["status"]["phase"] == "Succeeded"
    check = {c["type"]: c for c in refused["status"]["conditions"]}["RepositoryIntegrityVerified"]
    assert (check["status"], check["reason"]) == ("False", "InvalidCheckSettings")
    assert f"Repository {namespace}/local-repo" in check["message"]
    assert f"{INTERVAL}='daily'" in check["message"]
    warned = wait_until(
        lambda: [
            e for e in events_for(kubectl, namespace, "local-repo") if e["reason"] == "InvalidCheckSettings"
        ],
        timeout=30,
        what="the Repository's InvalidCheckSettings event",
    )
    assert warned[0]["type"] == "Warning"
    assert INTERVAL in warned[0]["message"]
    assert "lastCheckTime" not in repository_once(kubectl, namespace, lambda r: r.get("snapshotCount") == 1)

    # Every backup, reading the whole data (1/1): checked after the session, the verdict on the Repository.
    kubectl(
        "annotate",
        "--overwrite",
        "repository",
        "local-repo",
        "-n",
        namespace,
        f"{INTERVAL}=0s",
        f"{SUBSET}=1/1",
    )
    every = wait_phase(kubectl, namespace, setup.session("every"), {"Succeeded", "Failed"})
    assert every["status"]["phase"] == "Succeeded"
    check = condition_once(kubectl, namespace, "every", "RepositoryIntegrityVerified")
    assert (check["status"], check["reason"]) == ("True", "SuccessfullyVerifiedRepositoryIntegrity")
    assert "reading data subset 1/1" in check["message"]
    good = repository_once(kubectl, namespace, lambda r: "lastCheckTime" in r)
    assert good["integrity"] is True

    # A data pack lost from the backend: the next backup (unchanged files) succeeds, its check fails.
    packs = sorted((setup.repo_dir / "data").glob("*/*"), key=lambda p: p.stat().st_size)
    packs[-1].unlink()
    damaged = wait_phase(kubectl, namespace, setup.session("damaged"), {"Succeeded", "Failed"})
    assert damaged["status"]["phase"] == "Succeeded"
    check = condition_once(kubectl, namespace, "damaged", "RepositoryIntegrityVerified")
    assert (check["status"], check["reason"]) == ("False", "FailedToVerifyRepositoryIntegrity")
    assert "found errors" in check["message"]
    bad = repository_once(kubectl, namespace, lambda r: r.get("integrity") is False)
    assert bad["lastCheckTime"] >= good["lastCheckTime"]
    for involved in ("local-repo", "damaged"):
        events = wait_until(
            lambda: check_failed(kubectl, namespace, involved),  # noqa: B023 - called within the loop
            timeout=30,
            what=f"RepositoryIntegrityCheckFailed on {involved}",
        )
        assert events[0]["type"] == "Warning"
        assert f"Repository {namespace}/local-repo" in events[0]["message"]

    def integrity_gauge() -> float | None:
        samples = metrics_from(agent.url).get("stash_repository_integrity", [])
        return samples[0].value if samples else None

    assert wait_until(lambda: integrity_gauge() == 0.0, timeout=30, what="the integrity gauge at 0")
    assert metrics_from(agent.url)["stash_repository_last_check_time_seconds"][0].value > 0


def check_failed(kubectl: Callable[..., Any], namespace: str, name: str) -> list[dict[str, Any]]:
    """The RepositoryIntegrityCheckFailed events about object ``name``."""
    return [
        e for e in events_for(kubectl, namespace, name) if e["reason"] == "RepositoryIntegrityCheckFailed"
    ]
