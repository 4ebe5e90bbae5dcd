"""The agent's settings: from its command line (written by the operator) and the downward API env."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stashlet.agent.errors import RefuseInput
from stashlet.api import agent_contract as contract
from stashlet.api import agent_identity, names

MODE_REPO = "repo"
"""One restic command on one Repository for ``kubectl stash`` (:mod:`stashlet.agent.repo_command`)."""


class SettingsError(RefuseInput):
    """The agent was started without something it needs; the message names the flag or variable."""


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent is told at start; frozen and passed in, never global."""

    mode: str
    invoker_kind: str
    invoker_name: str
    target_kind: str
    target_name: str
    namespace: str
    pod_name: str
    node_name: str | None
    status_port: int
    listen_host: str
    tmp_dir: str
    pushgateway_url: str | None
    log_level: str
    backup_session: str | None
    api_token_file: str | None
    restic_binary: str
    drill_step: str = contract.DRILL_STEP_ALL
    """Which steps of a restore drill this process runs (mode ``drill``): all, verify or report."""
    storage_secrets_dir: str | None = None
    """Where the operator mounted the storage Secret of a Repository in the agent's own namespace (one
    folder per Secret, ``$STASHLET_STORAGE_SECRETS_DIR``); None: read it through the API."""

    @property
    def cache_dir(self) -> str:
        """Restic's cache, in the agent's temporary volume."""
        return os.path.join(self.tmp_dir, "restic-cache")


def parser() -> argparse.ArgumentParser:
    """The agent's command line (the flags come from stashlet.api.agent_contract)."""
    top = argparse.ArgumentParser(prog=contract.AGENT_COMMAND, description="stashlet agent")
    modes = top.add_subparsers(dest="mode", required=True)
    for mode, text in (
        (contract.MODE_SIDECAR, "watch BackupSessions and back up (sidecar)"),
        (contract.MODE_RESTORE, "restore before the application starts (init-container)"),
        (contract.MODE_JOB, "run one BackupSession as a Job"),
        (contract.MODE_WIPE, "wipe a deleted Repository's backend data (spec.wipeOut), as a Job"),
        (contract.MODE_RESTORE_JOB, "restore one host of a RestoreSession into claims, as a Job"),
        (MODE_REPO, "run one restic command on a Repository for kubectl stash, as a Pod"),
        (contract.MODE_DRILL, "restore the latest snapshots into scratch space and verify them"),
    ):
        sub = modes.add_parser(mode, help=text)
        sub.add_argument(contract.FLAG_INVOKER_KIND, default=names.KIND_BACKUP_CONFIGURATION)
        sub.add_argument(contract.FLAG_INVOKER_NAME, required=True)
        sub.add_argument(contract.FLAG_TARGET_KIND, default="")
        sub.add_argument(contract.FLAG_TARGET_NAME, default="")
        sub.add_argument(contract.FLAG_STATUS_PORT, type=int, default=names.DEFAULT_STATUS_PORT)
        sub.add_argument(contract.FLAG_TMP_DIR, default=names.TMP_MOUNT_PATH)
        sub.add_argument(contract.FLAG_PUSHGATEWAY_URL, default=None)
        sub.add_argument(
            contract.FLAG_LOG_LEVEL, default="info", choices=["debug", "info", "warning", "error"]
        )
        sub.add_argument(contract.FLAG_BACKUP_SESSION, default=None)
        sub.add_argument(contract.FLAG_API_TOKEN_FILE, default=None)
        sub.add_argument(
            contract.FLAG_DRILL_STEP, default=contract.DRILL_STEP_ALL, choices=contract.DRILL_STEPS
        )
        sub.add_argument("--listen-host", default="0.0.0.0", help="address of the status API")
    return top


def load(argv: Sequence[str], environ: Mapping[str, str]) -> AgentSettings:
    """Settings from ``argv`` and ``environ``; SettingsError names what is missing."""
    args = parser().parse_args(list(argv))
    namespace = environ.get(contract.ENV_NAMESPACE) or _service_account_namespace()
    if not namespace:
        raise SettingsError(
            f"the agent needs its namespace: set {contract.ENV_NAMESPACE} (downward API "
            "metadata.namespace) or run it with a service account"
        )
    pod_name = environ.get(contract.ENV_POD_NAME) or environ.get("HOSTNAME") or socket.gethostname()
    if args.mode not in (
        contract.MODE_JOB,
        contract.MODE_WIPE,
        contract.MODE_RESTORE_JOB,
        contract.MODE_DRILL,
        MODE_REPO,
    ) and not (args.target_kind and args.target_name):
        raise SettingsError(f"{args.mode} needs {contract.FLAG_TARGET_KIND} and {contract.FLAG_TARGET_NAME}")
    return AgentSettings(
        mode=args.mode,
        invoker_kind=args.invoker_kind,
        invoker_name=args.invoker_name,
        target_kind=args.target_kind,
        target_name=args.target_name,
        namespace=namespace,
        pod_name=pod_name,
        node_name=environ.get(contract.ENV_NODE_NAME) or None,
        status_port=args.status_port,
        listen_host=args.listen_host,
        tmp_dir=args.tmp_dir,
        pushgateway_url=args.pushgateway_url,
        log_level=args.log_level,
        backup_session=args.backup_session,
        api_token_file=args.api_token_file,
        drill_step=args.drill_step,
        restic_binary=environ.get("STASHLET_RESTIC", "restic"),
        storage_secrets_dir=environ.get(agent_identity.ENV_STORAGE_SECRETS_DIR) or None,
    )


def _service_account_namespace() -> str | None:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as handle:
            return handle.read().strip() or None
    except OSError:
        return None
