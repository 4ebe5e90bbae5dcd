"""Stash's backup and restore hooks: ``preBackup``/``postBackup``, ``preRestore``/``postRestore``.

A hook is a ``prober.Handler`` (kmodules.xyz/prober): one of ``exec`` (a command run in a container of
the executor pod, through the API server's ``pods/exec``), ``httpGet``, ``httpPost`` (headers, a body or
a form) or ``tcpSocket``, with ``containerName``; a post hook adds ``executionPolicy`` (``Always``, the
default, ``OnSuccess``, ``OnFailure``, and for backups ``OnFinalRetryFailure``).

The API, for the backup and restore runners::

    hooks = backup_hooks(config.spec.hooks)          # HookSpecError names the field path
    data = backup_data(session, target_ref, phase=PHASE_FAILED, error=why, now=now)
    result = await run_hook(HookKind.POST_BACKUP, hooks.post, PodRef(ns, pod), data, api=api)
    condition = hook_condition(HookKind.POST_BACKUP, result)   # Stash's type, reason, message
    if not result.succeeded: ...                     # result.message holds no secret value

``data`` (:class:`HookData`) is Stash's session summary, the object the Go templates of an ``exec``
command or an ``httpPost`` body read (``{{ .Status.Phase }}``, ``{{ .Status.Error }}``, ...); a post
hook its ``executionPolicy`` excludes comes back ``skipped`` (a success, with Stash's skip message).

Modules: :mod:`stashlet.api.hooks` (typed hooks parsed from the manifests' dicts, shared with the
operator, which refuses a bad one), :mod:`.data` (the summary and
the execution policy), :mod:`.template`, :mod:`.lexer` and :mod:`.gofuncs` (a safe renderer of Go
templates), :mod:`.probes` (HTTP and TCP), :mod:`.pods` (the executor pod's IP, containers and ports),
:mod:`.podexec` (``pods/exec``), :mod:`.outcome` (the result, its condition and event, and scrubbing of
secret values), :mod:`.run` (one hook, end to end).
"""

from stashlet.agent.hooks.data import (
    PHASE_FAILED,
    PHASE_SUCCEEDED,
    HookData,
    InvokerRef,
    SessionStatus,
    TargetInfo,
    backup_data,
    restore_data,
    skip_reason,
)
from stashlet.agent.hooks.outcome import HookCondition, HookResult, hook_condition
from stashlet.agent.hooks.run import DEFAULT_TIMEOUT, PodRef, run_hook
from stashlet.api.hooks import (
    ExecutionPolicy,
    Hook,
    HookKind,
    HookSet,
    HookSpecError,
    backup_hooks,
    restore_hooks,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "PHASE_FAILED",
    "PHASE_SUCCEEDED",
    "ExecutionPolicy",
    "Hook",
    "HookCondition",
    "HookData",
    "HookKind",
    "HookResult",
    "HookSet",
    "HookSpecError",
    "InvokerRef",
    "PodRef",
    "SessionStatus",
    "TargetInfo",
    "backup_data",
    "backup_hooks",
    "hook_condition",
    "restore_data",
    "restore_hooks",
    "run_hook",
    "skip_reason",
]
