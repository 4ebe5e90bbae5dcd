"""The ``stash`` sidecar's own identity and credentials, as the operator hands them to that container only.

- ServiceAccount ``stashlet-agent-<bc>`` (:func:`agent_account`) is made for each BackupConfiguration; its
  token lives in the Secret of the same name (type ``kubernetes.io/service-account-token``, filled by the
  token controller) and is mounted into the ``stash`` container at :data:`KUBE_TOKEN_DIR` (``token`` and
  ``ca.crt``); ``$STASHLET_KUBE_TOKEN_DIR`` (:data:`ENV_KUBE_TOKEN_DIR`) tells the agent to talk to the API
  server with it instead of the pod's own service account.
- The storage Secret, when it lives in the configuration's namespace, is mounted into the same container at
  ``<STORAGE_SECRETS_DIR>/<secret name>`` (one file per key); ``$STASHLET_STORAGE_SECRETS_DIR``
  (:data:`ENV_STORAGE_SECRETS_DIR`) tells the agent to read it there rather than through the API.

The ``stash-init`` init-container of a RestoreSession gets the same, with ServiceAccount (and token Secret)
``stashlet-restore-<rs>`` (:func:`restore_account`), the account its restore Jobs run as too: one identity
per RestoreSession. It writes only its own RestoreSession's status, which RBAC grants by name.

The admission policy the Helm chart ships (``charts/stashlet/templates/admission-policy.yaml``) ties a
BackupSession written by ServiceAccount ``<prefix><name>`` (one of :data:`SESSION_WRITER_PREFIXES`) to the
configuration ``<name>``, so the name is the identity: it must be the whole configuration name, never cut.
"""

from __future__ import annotations

from typing import Final

AGENT_ACCOUNT_PREFIX: Final = "stashlet-agent-"
"""The prefix of the sidecar's per-configuration ServiceAccount (and its token Secret)."""

RESTORE_ACCOUNT_PREFIX: Final = "stashlet-restore-"
"""The prefix of a RestoreSession's own ServiceAccount (and its token Secret): ``stash-init``'s and its
restore Jobs'."""

TOKEN_ACCOUNT_PREFIXES: Final = (AGENT_ACCOUNT_PREFIX, RESTORE_ACCOUNT_PREFIX)
"""The accounts whose token Secrets the operator creates (the chart's admission policy admits no other)."""

SESSION_WRITER_PREFIXES: Final = (AGENT_ACCOUNT_PREFIX, "stashlet-kubedump-", "stashlet-pvc-backup-")
"""The ServiceAccounts stashlet makes that write BackupSessions: the sidecar's and a Task's Jobs'. The
admission policy allows each to write only the sessions of the configuration its name carries."""

MAX_OBJECT_NAME: Final = 253
"""The longest name a ServiceAccount or Secret may have (a DNS subdomain)."""

ENV_KUBE_TOKEN_DIR: Final = "STASHLET_KUBE_TOKEN_DIR"  # noqa: S105 - a variable's name, not a secret
ENV_STORAGE_SECRETS_DIR: Final = "STASHLET_STORAGE_SECRETS_DIR"
KUBE_TOKEN_DIR: Final = "/var/run/stashlet/kube-token"  # noqa: S105 - a path
STORAGE_SECRETS_DIR: Final = "/var/run/stashlet/storage-secrets"


def agent_account(configuration: str) -> str:
    """The sidecar's ServiceAccount (and token Secret) for BackupConfiguration ``configuration``."""
    return f"{AGENT_ACCOUNT_PREFIX}{configuration}"


def restore_account(session: str) -> str:
    """The ServiceAccount (and token Secret) of RestoreSession ``session``'s ``stash-init`` and Jobs."""
    return f"{RESTORE_ACCOUNT_PREFIX}{session}"


def longest_configuration_name() -> int:
    """The longest BackupConfiguration name whose agent account fits in :data:`MAX_OBJECT_NAME`."""
    return MAX_OBJECT_NAME - len(AGENT_ACCOUNT_PREFIX)
