"""The contract between the operator and the agent: the agent's command line and environment.

The operator writes these into pod specs (sidecar, init-container, Job); the agent parses exactly
these. Both sides build from this one module, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

AGENT_COMMAND: Final = "stashlet-agent"
OPERATOR_COMMAND: Final = "stashlet-operator"

# Agent modes (subcommands).
MODE_SIDECAR: Final = "sidecar"
MODE_RESTORE: Final = "restore"
MODE_JOB: Final = "job"
MODE_WIPE: Final = "wipe"
MODE_RESTORE_JOB: Final = "restore-job"
MODE_DRILL: Final = "drill"

# Operator modes.
MODE_RUN: Final = "run"
MODE_TRIGGER: Final = "trigger"

# Flags.
FLAG_INVOKER_KIND: Final = "--invoker-kind"
FLAG_INVOKER_NAME: Final = "--invoker-name"
FLAG_TARGET_KIND: Final = "--target-kind"
FLAG_TARGET_NAME: Final = "--target-name"
FLAG_STATUS_PORT: Final = "--status-port"
FLAG_PUSHGATEWAY_URL: Final = "--pushgateway-url"
FLAG_TMP_DIR: Final = "--tmp-dir"
FLAG_LOG_LEVEL: Final = "--log-level"
FLAG_BACKUP_SESSION: Final = "--backup-session"
FLAG_API_TOKEN_FILE: Final = "--api-token-file"  # noqa: S105 - a flag name, not a secret
FLAG_DRILL_STEP: Final = "--drill-step"

# A restore drill's Job (mode ``drill``): without a user command one agent container does every step
# (``all``); with one, an init-container restores and verifies (``verify``), then the user's command runs
# in container DRILL_COMMAND_CONTAINER beside an agent container that waits for it and records (``report``).
DRILL_STEP_ALL: Final = "all"
DRILL_STEP_VERIFY: Final = "verify"
DRILL_STEP_REPORT: Final = "report"
DRILL_STEPS: Final = (DRILL_STEP_ALL, DRILL_STEP_VERIFY, DRILL_STEP_REPORT)
DRILL_COMMAND_CONTAINER: Final = "drill-command"
DRILL_EVENT_PASSED: Final = "RestoreDrillSucceeded"
DRILL_EVENT_FAILED: Final = "RestoreDrillFailed"
"""The reasons of the events a drill's verdict puts on its BackupConfiguration (the agent's; the operator's
when the drill's Job ended without one)."""
DRILL_SCRATCH_PATH: Final = "/restore-drill"
"""Where a drill restores (an emptyDir), one folder per host: ``/restore-drill/<host>/<backed-up path>``."""

# Environment, filled by the downward API.
ENV_POD_NAME: Final = "POD_NAME"
ENV_NAMESPACE: Final = "NAMESPACE"
ENV_NODE_NAME: Final = "NODE_NAME"
ENV_POD_IP: Final = "POD_IP"
# Set on a restore Job for one ordinal of spec.target.replicas: the host is <alias or host>-<ordinal>.
ENV_POD_ORDINAL: Final = "POD_ORDINAL"


@dataclass(frozen=True)
class AgentInvocation:
    """What one agent process is for: the invoker it serves and the workload it lives in."""

    mode: str
    invoker_kind: str
    invoker_name: str
    target_kind: str
    target_name: str
    status_port: int
    tmp_dir: str
    pushgateway_url: str | None = None
    log_level: str = "info"
    backup_session: str | None = None
    api_token_file: str | None = None
    drill_step: str | None = None

    def args(self) -> list[str]:
        """The container ``args`` for this invocation (the command is AGENT_COMMAND)."""
        argv = [
            self.mode,
            f"{FLAG_INVOKER_KIND}={self.invoker_kind}",
            f"{FLAG_INVOKER_NAME}={self.invoker_name}",
            f"{FLAG_TARGET_KIND}={self.target_kind}",
            f"{FLAG_TARGET_NAME}={self.target_name}",
            f"{FLAG_STATUS_PORT}={self.status_port}",
            f"{FLAG_TMP_DIR}={self.tmp_dir}",
            f"{FLAG_LOG_LEVEL}={self.log_level}",
        ]
        if self.pushgateway_url:
            argv.append(f"{FLAG_PUSHGATEWAY_URL}={self.pushgateway_url}")
        if self.backup_session:
            argv.append(f"{FLAG_BACKUP_SESSION}={self.backup_session}")
        if self.api_token_file:
            argv.append(f"{FLAG_API_TOKEN_FILE}={self.api_token_file}")
        if self.drill_step:
            argv.append(f"{FLAG_DRILL_STEP}={self.drill_step}")
        return argv


def downward_env() -> list[dict[str, object]]:
    """The env entries that give the agent its pod's identity through the downward API."""

    def field(name: str, path: str) -> dict[str, object]:
        return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}

    return [
        field(ENV_POD_NAME, "metadata.name"),
        field(ENV_NAMESPACE, "metadata.namespace"),
        field(ENV_NODE_NAME, "spec.nodeName"),
        field(ENV_POD_IP, "status.podIP"),
    ]
