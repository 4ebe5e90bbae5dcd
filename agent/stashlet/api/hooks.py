"""Hooks as typed values, parsed from the manifests' ``spec.hooks`` dicts: pure.

``spec.hooks`` of a BackupConfiguration (``preBackup``, ``postBackup``) and of a RestoreSession
(``preRestore``, ``postRestore``) hold ``prober.Handler`` objects (kmodules.xyz/prober ``api/v1``): one
of ``exec`` (``command``), ``httpGet`` (``host``, ``port``, ``path``, ``scheme``, ``httpHeaders``),
``httpPost`` (the same plus ``body`` and ``form``) or ``tcpSocket`` (``host``, ``port``), and
``containerName``. A post hook also has ``executionPolicy``: ``Always`` (the default), ``OnSuccess``,
``OnFailure``, and for ``postBackup`` alone ``OnFinalRetryFailure``.

The handler's API says one and only one action should be given; a hook with none or several, a field
Stash's schema does not have, or a value of the wrong shape is refused with :class:`HookSpecError`,
whose message starts with the field's path (``spec.hooks.preBackup.httpGet.port: ...``). Shared by the
operator (which refuses such an object before it runs) and the agent (which runs the hooks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from stashlet.api.backupconfiguration import BackupHooks
from stashlet.api.restoresession import RestoreHooks


class HookSpecError(ValueError):
    """A hook's definition is wrong; ``message`` starts with the field's path. The operator names it in
    ``ValidationPassed`` (the object never runs); an agent that meets one anyway fails the host with
    ``reason``."""

    reason = "InvalidHook"

    def __init__(self, message: str) -> None:
        """Keep the message (the field's path first)."""
        super().__init__(message)
        self.message = message


class HookKind(StrEnum):
    """When a hook runs (Stash's hook types, as the field names spell them)."""

    PRE_BACKUP = "preBackup"
    POST_BACKUP = "postBackup"
    PRE_RESTORE = "preRestore"
    POST_RESTORE = "postRestore"

    @property
    def is_post(self) -> bool:
        """True for the hooks that run after the work (and have an ``executionPolicy``)."""
        return self in (HookKind.POST_BACKUP, HookKind.POST_RESTORE)


class ExecutionPolicy(StrEnum):
    """When a post hook runs, given the session's outcome."""

    ALWAYS = "Always"
    ON_SUCCESS = "OnSuccess"
    ON_FAILURE = "OnFailure"
    ON_FINAL_RETRY_FAILURE = "OnFinalRetryFailure"


_POLICIES: Final[dict[HookKind, tuple[ExecutionPolicy, ...]]] = {
    HookKind.POST_BACKUP: tuple(ExecutionPolicy),
    HookKind.POST_RESTORE: (ExecutionPolicy.ALWAYS, ExecutionPolicy.ON_SUCCESS, ExecutionPolicy.ON_FAILURE),
}


@dataclass(frozen=True)
class ExecAction:
    """Run ``command`` (no shell unless the command is one) in a container of the executor pod."""

    command: tuple[str, ...]


@dataclass(frozen=True)
class HTTPHeader:
    """One request header; HTTP allows repeated names."""

    name: str
    value: str


@dataclass(frozen=True)
class FormEntry:
    """One key of a URL-encoded form with its values."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class HTTPAction:
    """An HTTP request: ``GET`` (``httpGet``), or ``POST`` (``httpPost``) with a body or a form.

    ``port`` is a number or the name of a port of the hook's container; ``host`` empty means the
    executor pod's IP; ``path`` starts with ``/`` (and may hold a query). A ``form`` (when it has
    entries) is sent instead of ``body``.
    """

    method: str
    port: int | str
    host: str = ""
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[HTTPHeader, ...] = ()
    body: str = ""
    form: tuple[FormEntry, ...] | None = None


@dataclass(frozen=True)
class TCPSocketAction:
    """Open (and close) a TCP connection; ``host`` empty means the executor pod's IP."""

    port: int | str
    host: str = ""


Action = ExecAction | HTTPAction | TCPSocketAction


@dataclass(frozen=True)
class Hook:
    """One hook: its action, the container it concerns, when it runs, and where it is defined."""

    action: Action
    container_name: str = ""
    execution_policy: ExecutionPolicy = ExecutionPolicy.ALWAYS
    path: str = "spec.hooks"

    @property
    def handler_name(self) -> str:
        """``exec``, ``httpGet``, ``httpPost`` or ``tcpSocket``."""
        if isinstance(self.action, ExecAction):
            return "exec"
        if isinstance(self.action, TCPSocketAction):
            return "tcpSocket"
        return "httpGet" if self.action.method == "GET" else "httpPost"


@dataclass(frozen=True)
class HookSet:
    """A session's pre and post hook (either may be missing)."""

    pre: Hook | None = None
    post: Hook | None = None

    @property
    def has_exec(self) -> bool:
        """True when a hook runs a command in a container (and so needs ``pods/exec``)."""
        return any(isinstance(h.action, ExecAction) for h in (self.pre, self.post) if h is not None)


_ACTIONS: Final = ("exec", "httpGet", "httpPost", "tcpSocket")
_HANDLER_FIELDS: Final = frozenset({*_ACTIONS, "containerName"})


def backup_hooks(hooks: BackupHooks | Mapping[str, Any] | None, where: str = "spec.hooks") -> HookSet:
    """A BackupConfiguration's ``spec.hooks`` (``preBackup``, ``postBackup``)."""
    return _hook_set(hooks, where, HookKind.PRE_BACKUP, HookKind.POST_BACKUP)


def restore_hooks(hooks: RestoreHooks | Mapping[str, Any] | None, where: str = "spec.hooks") -> HookSet:
    """A RestoreSession's ``spec.hooks`` (``preRestore``, ``postRestore``)."""
    return _hook_set(hooks, where, HookKind.PRE_RESTORE, HookKind.POST_RESTORE)


def backup_hook_problems(hooks: BackupHooks | Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a BackupConfiguration's ``spec.hooks`` (the first problem, naming its field)."""
    try:
        backup_hooks(hooks)
    except HookSpecError as exc:
        return [exc.message]
    return []


def restore_hook_problems(hooks: RestoreHooks | Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a RestoreSession's ``spec.hooks`` (the first problem, naming its field)."""
    try:
        restore_hooks(hooks)
    except HookSpecError as exc:
        return [exc.message]
    return []


def _hook_set(
    hooks: BackupHooks | RestoreHooks | Mapping[str, Any] | None, where: str, pre: HookKind, post: HookKind
) -> HookSet:
    if hooks is None:
        return HookSet()
    raw = hooks.to_dict() if isinstance(hooks, BackupHooks | RestoreHooks) else hooks
    fields = _mapping(raw, where)
    _known(fields, where, {pre.value, post.value})
    return HookSet(
        pre=_hook(fields.get(pre.value), f"{where}.{pre.value}", pre),
        post=_hook(fields.get(post.value), f"{where}.{post.value}", post),
    )


def _hook(raw: Any, where: str, kind: HookKind) -> Hook | None:
    if raw is None:
        return None
    fields = _mapping(raw, where)
    allowed = _HANDLER_FIELDS | ({"executionPolicy"} if kind.is_post else set())
    _known(fields, where, allowed)
    given = [name for name in _ACTIONS if fields.get(name) is not None]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise HookSpecError(f"{where}: give exactly one of {', '.join(_ACTIONS)} (found: {found})")
    name = given[0]
    action = _PARSERS[name](fields[name], f"{where}.{name}")
    return Hook(
        action=action,
        container_name=_string(fields.get("containerName"), f"{where}.containerName"),
        execution_policy=_policy(fields.get("executionPolicy"), f"{where}.executionPolicy", kind),
        path=where,
    )


def _policy(raw: Any, where: str, kind: HookKind) -> ExecutionPolicy:
    if raw is None or raw == "":
        return ExecutionPolicy.ALWAYS
    allowed = _POLICIES[kind]
    if raw not in {p.value for p in allowed}:
        raise HookSpecError(f"{where}: {raw!r} is not one of {', '.join(allowed)}")
    return ExecutionPolicy(raw)


def _exec(raw: Any, where: str) -> ExecAction:
    fields = _mapping(raw, where)
    _known(fields, where, {"command"})
    command = _strings(fields.get("command"), f"{where}.command")
    if not command:
        raise HookSpecError(f"{where}.command: give the command to run (a list of strings)")
    return ExecAction(command)


def _http_get(raw: Any, where: str) -> HTTPAction:
    return _http(raw, where, "GET", {"host", "port", "path", "scheme", "httpHeaders"})


def _http_post(raw: Any, where: str) -> HTTPAction:
    return _http(raw, where, "POST", {"host", "port", "path", "scheme", "httpHeaders", "body", "form"})


def _http(raw: Any, where: str, method: str, allowed: set[str]) -> HTTPAction:
    fields = _mapping(raw, where)
    _known(fields, where, allowed)
    scheme = _string(fields.get("scheme"), f"{where}.scheme") or "HTTP"
    if scheme.upper() not in ("HTTP", "HTTPS"):
        raise HookSpecError(f"{where}.scheme: {scheme!r} is neither HTTP nor HTTPS")
    path = _string(fields.get("path"), f"{where}.path")
    return HTTPAction(
        method=method,
        port=_port(fields.get("port"), f"{where}.port"),
        host=_string(fields.get("host"), f"{where}.host"),
        path=path if path.startswith("/") else f"/{path}",
        scheme=scheme.upper(),
        headers=_headers(fields.get("httpHeaders"), f"{where}.httpHeaders"),
        body=_string(fields.get("body"), f"{where}.body"),
        form=_form(fields.get("form"), f"{where}.form") or None,
    )


def _tcp(raw: Any, where: str) -> TCPSocketAction:
    fields = _mapping(raw, where)
    _known(fields, where, {"host", "port"})
    return TCPSocketAction(
        port=_port(fields.get("port"), f"{where}.port"), host=_string(fields.get("host"), f"{where}.host")
    )


_PARSERS: Final[dict[str, Callable[[Any, str], Action]]] = {
    "exec": _exec,
    "httpGet": _http_get,
    "httpPost": _http_post,
    "tcpSocket": _tcp,
}


def _headers(raw: Any, where: str) -> tuple[HTTPHeader, ...]:
    headers = []
    for i, item in enumerate(_list(raw, where)):
        at = f"{where}[{i}]"
        fields = _mapping(item, at)
        _known(fields, at, {"name", "value"})
        name = _string(fields.get("name"), f"{at}.name")
        if not name:
            raise HookSpecError(f"{at}.name: a header needs a name")
        headers.append(HTTPHeader(name, _string(fields.get("value"), f"{at}.value")))
    return tuple(headers)


def _form(raw: Any, where: str) -> tuple[FormEntry, ...]:
    entries = []
    for i, item in enumerate(_list(raw, where)):
        at = f"{where}[{i}]"
        fields = _mapping(item, at)
        _known(fields, at, {"key", "values"})
        entries.append(
            FormEntry(_string(fields.get("key"), f"{at}.key"), _strings(fields.get("values"), f"{at}.values"))
        )
    return tuple(entries)


def _port(raw: Any, where: str) -> int | str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 0 < raw < 65536:
            raise HookSpecError(f"{where}: {raw} is not a port number (1-65535)")
        return raw
    if isinstance(raw, str) and raw:
        return raw
    raise HookSpecError(f"{where}: give a port number (1-65535) or the name of a port of the container")


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise HookSpecError(f"{where}: expected an object, not {type(raw).__name__}")
    return raw


def _known(fields: Mapping[str, Any], where: str, allowed: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise HookSpecError(
            f"{where}.{unknown[0]}: not a field of a Stash hook here (known: {', '.join(sorted(allowed))})"
        )


def _list(raw: Any, where: str) -> Sequence[Any]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise HookSpecError(f"{where}: expected a list, not {type(raw).__name__}")
    return raw


def _string(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise HookSpecError(f"{where}: expected a string, not {type(raw).__name__}")
    return raw


def _strings(raw: Any, where: str) -> tuple[str, ...]:
    return tuple(_string(item, f"{where}[{i}]") for i, item in enumerate(_list(raw, where)))
