"""``kubectl stash``: argparse subcommands with kubectl-like help; each command's work lives in the module
named for its family (:mod:`.backups`, :mod:`.status`, :mod:`.copying`, :mod:`.repository_commands`,
:mod:`.keys`). Exit status 0 on success, 1 on a failure (``error: ...`` on stderr), 2 on bad usage."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO

from stashlet.kube.custom import StashClient
from stashlet.kube.errors import KubeError, TransportError
from stashlet.kube.rest import RestClient
from stashlet.kubectl_stash import backups, copying, keys, repository_commands, session_proof, status
from stashlet.kubectl_stash.cluster import Target, connect, resolve
from stashlet.kubectl_stash.errors import PluginError
from stashlet.kubectl_stash.repositories import read_repository
from stashlet.kubectl_stash.restic_access import Access, LocalAccess, PodAccess
from stashlet.kubectl_stash.tables import write_table
from stashlet.operator.settings import DEFAULT_AGENT_IMAGE

PROG = "kubectl stash"

DESCRIPTION = """\
kubectl stash manages stashlet (Stash v1beta1) backups from the command line.

 Find more information in the project's README ("The kubectl plugin")."""

EPILOG = """\
Examples:
  # Every configuration's last session, next run and repository, in all namespaces
  kubectl stash status -A

  # Take a backup now; pause and resume a configuration's scheduled backups
  kubectl stash trigger my-config -n demo
  kubectl stash pause backup --backupconfig=my-config -n demo
  kubectl stash resume backup --backupconfig=my-config -n demo

  # List a repository's snapshots and download one into ./restored
  kubectl stash snapshots my-repo -n demo
  kubectl stash download my-repo -n demo --snapshots=19eb4793 --destination=./restored

  # Rotate the repository password without downtime
  kubectl stash key update my-repo -n demo --new-password-file=./new-password

Use "kubectl stash <command> --help" for more information about a given command."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help laid out as kubectl's: description and examples as written, ``Usage:`` on a line of its own."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=110)

    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, "Usage:\n  ")


def _kubectl_like(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser._optionals.title = "Options"
    return parser


Runner = Callable[[argparse.Namespace, Target, TextIO], Awaitable[None]]


def _global_flags(default: object) -> argparse.ArgumentParser:
    """The flags every command takes, as kubectl names them. A command's copy defaults to SUPPRESS, so a
    flag given before the command (``kubectl stash -n demo trigger x``) is not overwritten."""
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("Global Flags")
    group.add_argument(
        "-n", "--namespace", default=default, help="If present, the namespace scope for this CLI request"
    )
    group.add_argument(
        "--kubeconfig", default=default, help="Path to the kubeconfig file to use for CLI requests"
    )
    group.add_argument("--context", default=default, help="The name of the kubeconfig context to use")
    return flags


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    usage: str,
    examples: str,
    flags: argparse.ArgumentParser,
    run: Runner,
) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        name,
        help=summary,
        description=summary,
        usage=usage,
        epilog=f"Examples:\n{examples}",
        parents=[flags],
        formatter_class=_Formatter,
    )
    sub.set_defaults(run=run)
    return _kubectl_like(sub)


async def _trigger(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    async with _client(target) as api:
        name = await backups.trigger(StashClient(api), target.namespace, args.name)
    out.write(f"{backups.SESSION_RESOURCE}/{name} created\n")


def _pause_runner(paused: bool) -> Runner:
    async def run(args: argparse.Namespace, target: Target, out: TextIO) -> None:
        if not args.backupconfig:
            raise PluginError("--backupconfig is required (the BackupConfiguration to pause or resume)")
        async with _client(target) as api:
            changed = await backups.set_paused(StashClient(api), target.namespace, args.backupconfig, paused)
        verb = ("paused" if paused else "resumed") if changed else "unchanged"
        out.write(f"{backups.CONFIGURATION_RESOURCE}/{args.backupconfig} {verb}\n")

    return run


def _access(args: argparse.Namespace, api: RestClient) -> Access:
    """Where restic runs: this machine's restic with ``--local``, else a Pod from the agent image."""
    if getattr(args, "local", False):
        return LocalAccess(api, args.restic)
    return PodAccess(api, image=args.image, backupconfig=getattr(args, "backupconfig", None))


def _flag_bool(value: str) -> bool:
    """A kubectl-style boolean flag value (``--flag=false``)."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r} (true or false)")


def _line(out: TextIO, line: str) -> None:
    out.write(line + "\n")


def _read_password(path: str | None) -> bytes:
    if not path:
        raise PluginError("--new-password-file is required: the file holding the new password")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PluginError(f"--new-password-file {path}: {exc.strerror or exc}") from exc
    return data.rstrip(b"\r\n")


async def _status(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    namespace = None if args.all_namespaces else target.namespace
    async with _client(target) as api:
        rows = await status.status_rows(StashClient(api), namespace, dt.datetime.now(dt.UTC))
    if not rows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        out.write(f"No BackupConfigurations found in {where}.\n")
        return
    write_table(out, status.HEADERS, rows)


async def _snapshots(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    async with _client(target) as api:
        repo = await read_repository(api, target.namespace, args.repository)
        rows = await repository_commands.snapshot_rows(_access(args, api), repo, dt.datetime.now(dt.UTC))
    if not rows:
        out.write(f"No snapshots in Repository {target.namespace}/{args.repository}.\n")
        return
    write_table(out, repository_commands.SNAPSHOT_HEADERS, rows)


async def _unlock(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    async with _client(target) as api:
        repo = await read_repository(api, target.namespace, args.repository)
        await repository_commands.unlock(_access(args, api), repo, remove_all=args.remove_all)
    which = "all locks" if args.remove_all else "stale locks"
    out.write(f"repositories.stash.appscode.com/{args.repository} unlocked ({which} removed)\n")


async def _check(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    async with _client(target) as api:
        repo = await read_repository(api, target.namespace, args.repository)
        outcome = await repository_commands.check(
            _access(args, api), repo, read_data=args.read_data, subset=args.read_data_subset
        )
    if not outcome.ok:
        details = "; ".join(outcome.errors) or "see restic check"
        raise PluginError(f"Repository {target.namespace}/{args.repository} contains errors: {details}")
    out.write(f"repositories.stash.appscode.com/{args.repository}: no errors were found\n")


async def _delete_snapshot(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    repository, snapshot = repository_commands.split_snapshot_name(args.name)
    async with _client(target) as api:
        repo = await read_repository(api, target.namespace, repository)
        await repository_commands.delete_snapshot(_access(args, api), repo, snapshot)
    out.write(f"snapshot {args.name} deleted\n")


async def _download(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    snapshots = [s for s in (args.snapshots or "").split(",") if s]
    paths = [p for p in (args.paths or "").split(",") if p]
    async with _client(target) as api:
        repo = await read_repository(api, target.namespace, args.repository)
        written = await repository_commands.download(
            LocalAccess(api, args.restic), repo, snapshots, Path(args.destination), paths, sys.stderr
        )
    for folder in written:
        out.write(f"downloaded into {folder}\n")


async def _cp(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    if not args.to_namespace:
        raise PluginError("--to-namespace is required: the namespace to copy into")
    copy = {
        "secret": copying.copy_secret,
        "repository": copying.copy_repository,
        "backupconfig": copying.copy_backupconfig,
    }[args.kind]
    async with _client(target) as api:
        await copy(api, target.namespace, args.name, args.to_namespace, lambda line: _line(out, line))


async def _key(args: argparse.Namespace, target: Target, out: TextIO) -> None:
    async with _client(target) as api:
        repo = await read_repository(api, target.namespace, args.repository)
        access = _access(args, api)
        if args.action == "list":
            write_table(out, keys.KEY_HEADERS, await keys.key_rows(access, repo))
        elif args.action == "add":
            password = _read_password(args.new_password_file)
            key_id = await keys.add_key(access, repo, password, host=args.host, user=args.user)
            out.write(f"key {key_id[:8]} added to repositories.stash.appscode.com/{args.repository}\n")
        elif args.action == "remove":
            await keys.remove_key(access, repo, args.id)
            out.write(f"key {args.id} removed from repositories.stash.appscode.com/{args.repository}\n")
        else:
            password = _read_password(args.new_password_file)
            await keys.update_key(
                api,
                access,
                repo,
                password,
                propagation_wait=args.propagation_wait,
                prove_session=args.prove_session,
                session_timeout=args.session_timeout,
                report=lambda line: _line(out, line),
            )
            out.write(
                f"repositories.stash.appscode.com/{args.repository}: password updated; the Secret and the "
                "repository hold only the new one\n"
            )


def _restic_flags(parser: argparse.ArgumentParser, *, local_only: bool = False) -> None:
    group = parser.add_argument_group("Restic Flags")
    if not local_only:
        group.add_argument(
            "--local",
            action="store_true",
            help="Run restic on this machine (the backend must be reachable from here) instead of in a Pod",
        )
        group.add_argument(
            "--image",
            default=DEFAULT_AGENT_IMAGE,
            help=f"The agent image the restic Pod runs (default {DEFAULT_AGENT_IMAGE})",
        )
        group.add_argument(
            "--backupconfig",
            help="The BackupConfiguration whose runtimeSettings.container env/envFrom the restic Pod takes "
            "(default: the one using the Repository)",
        )
    group.add_argument(
        "--restic", default="restic", help="The restic binary to run locally (default: restic)"
    )


def _repository_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], flags: argparse.ArgumentParser
) -> None:
    """The commands that run restic on a Repository."""
    repo_commands = (
        ("snapshots", "List a Repository's snapshots: ID, host, paths, time and size.", _snapshots, ""),
        ("unlock", "Remove the stale locks of a Repository.", _unlock, ""),
        (
            "check",
            "Check a Repository for errors; with --read-data, read all data (a restore drill).",
            _check,
            "",
        ),
    )
    for name, text, runner, _ in repo_commands:
        sub = _command(
            commands,
            name,
            text,
            f"{PROG} {name} <repository-name> [flags]",
            f"  {PROG} {name} my-repo --namespace=demo",
            flags,
            runner,
        )
        sub.add_argument("repository", metavar="repository-name")
        _restic_flags(sub)
        if name == "unlock":
            sub.add_argument("--remove-all", action="store_true", help="Remove all locks, even live ones")
        if name == "check":
            sub.add_argument("--read-data", action="store_true", help="Read all data blobs")
            sub.add_argument(
                "--read-data-subset", help="Read a subset of data packs: 'n/t', 'x%%' or a size (e.g. 10%%)"
            )

    download = _command(
        commands,
        "download",
        "Download snapshots (or paths of them) from a Repository into a local folder, with progress.",
        f"{PROG} download <repository-name> --snapshots=<id,...> --destination=<dir> [flags]",
        f"  {PROG} download gcs-repo --namespace=demo --destination=/home/downloads/ "
        "--snapshots=19eb4793,b7244d52",
        flags,
        _download,
    )
    download.add_argument("repository", metavar="repository-name")
    download.add_argument("--snapshots", help="The snapshot IDs to download, comma-separated")
    download.add_argument("--destination", default=".", help="The local folder to download into")
    download.add_argument("--paths", help="Only these paths of each snapshot, comma-separated")
    _restic_flags(download, local_only=True)

    delete = _kubectl_like(
        commands.add_parser(
            "delete",
            help="Delete a snapshot.",
            description="Delete a snapshot.",
            usage=f"{PROG} delete snapshot <repository-name>-<snapshot-id> [flags]",
            formatter_class=_Formatter,
        )
    )
    delete_kinds = delete.add_subparsers(
        title="Available Commands", metavar="<kind>", dest="kind", required=True
    )
    snapshot = _command(
        delete_kinds,
        "snapshot",
        "Forget a snapshot and prune the data only it held.",
        f"{PROG} delete snapshot <repository-name>-<snapshot-id> [flags]",
        f"  {PROG} delete snapshot gcs-repo-19eb4793 --namespace=demo",
        flags,
        _delete_snapshot,
    )
    snapshot.add_argument("name", metavar="snapshot-name")
    _restic_flags(snapshot)


def _object_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], flags: argparse.ArgumentParser
) -> None:
    """``cp`` and ``key``."""
    cp = _kubectl_like(
        commands.add_parser(
            "cp",
            help="Copy a Secret, Repository or BackupConfiguration to another namespace.",
            description="Copy a Secret, Repository or BackupConfiguration to another namespace.",
            usage=f"{PROG} cp (secret|repository|backupconfig) <name> --to-namespace=<namespace> [flags]",
            formatter_class=_Formatter,
        )
    )
    cp_kinds = cp.add_subparsers(title="Available Commands", metavar="<kind>", dest="kind", required=True)
    for kind, text in (
        ("secret", "Copy a Secret to another namespace."),
        ("repository", "Copy a Repository and its storage Secret to another namespace."),
        ("backupconfig", "Copy a BackupConfiguration, its Repository and Secret to another namespace."),
    ):
        sub = _command(
            cp_kinds,
            kind,
            text,
            f"{PROG} cp {kind} <{kind}-name> [flags]",
            f"  {PROG} cp {kind} my-{kind} --namespace=demo --to-namespace=demo1",
            flags,
            _cp,
        )
        sub.add_argument("name", metavar=f"{kind}-name")
        sub.add_argument("--to-namespace", help="The namespace to copy into")

    key = _kubectl_like(
        commands.add_parser(
            "key",
            help="Manage the keys (passwords) of a Repository.",
            description="Manage the keys (passwords) of a Repository.",
            usage=f"{PROG} key (list|add|update|remove) <repository-name> [flags]",
            formatter_class=_Formatter,
        )
    )
    actions = key.add_subparsers(title="Available Commands", metavar="<action>", dest="action", required=True)
    for action, text, example in (
        ("list", "List the keys (passwords) of a Repository.", "my-repo --namespace=demo"),
        (
            "add",
            "Add a key (password) to a Repository.",
            "my-repo --namespace=demo --user root --host my-host --new-password-file password.txt",
        ),
        (
            "update",
            "Change the Repository's password without downtime: add the new key, update the Secret, prove "
            "a read and a backup session, remove the old key.",
            "my-repo --namespace=demo --new-password-file password.txt",
        ),
        ("remove", "Remove a key (password) of a Repository.", "my-repo --namespace=demo --id cdc89a7d"),
    ):
        sub = _command(
            actions,
            action,
            text,
            f"{PROG} key {action} <repository-name> [flags]",
            f"  {PROG} key {action} {example}",
            flags,
            _key,
        )
        sub.add_argument("repository", metavar="repository-name")
        _restic_flags(sub)
        if action in ("add", "update"):
            sub.add_argument("--new-password-file", help="File from which to read the new password")
        if action == "add":
            sub.add_argument("--host", help="Host of the new key")
            sub.add_argument("--user", help="User of the new key")
        if action == "remove":
            sub.add_argument("--id", help="ID of the restic key")
        if action == "update":
            sub.add_argument(
                "--propagation-wait",
                type=float,
                default=keys.DEFAULT_PROPAGATION_WAIT,
                help="Seconds to wait, after the Secret is updated, before removing the old key (the "
                "kubelets update mounted Secrets within about a minute)",
            )
            sub.add_argument(
                "--prove-session",
                type=_flag_bool,
                default=True,
                metavar="true|false",
                help="Run a backup session of each configuration using the Repository with the new password "
                "before removing the old key (default true)",
            )
            sub.add_argument(
                "--session-timeout",
                type=float,
                default=session_proof.DEFAULT_SESSION_TIMEOUT,
                help="Seconds each proving session may take",
            )


def parser() -> argparse.ArgumentParser:
    """The whole command line of ``kubectl stash``."""
    flags = _global_flags(argparse.SUPPRESS)
    top = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [command] [flags]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_Formatter,
        parents=[_global_flags(None)],
    )
    _kubectl_like(top)
    commands = top.add_subparsers(title="Available Commands", metavar="<command>", dest="command")

    trigger = _command(
        commands,
        "trigger",
        "Take an instant backup: create a BackupSession for a BackupConfiguration.",
        f"{PROG} trigger <backupconfig-name> [flags]",
        f"  {PROG} trigger my-config --namespace=demo",
        flags,
        _trigger,
    )
    trigger.add_argument("name", metavar="backupconfig-name")

    for verb, paused in (("pause", True), ("resume", False)):
        text = "Pause a BackupConfiguration's backups." if paused else "Resume a paused BackupConfiguration."
        group = _kubectl_like(
            commands.add_parser(
                verb,
                help=text,
                description=text,
                usage=f"{PROG} {verb} backup [flags]",
                formatter_class=_Formatter,
            )
        )
        kinds = group.add_subparsers(title="Available Commands", metavar="<kind>", dest="kind", required=True)
        sub = _command(
            kinds,
            "backup",
            text,
            f"{PROG} {verb} backup --backupconfig=<name> [flags]",
            f"  {PROG} {verb} backup --namespace=demo --backupconfig=my-config",
            flags,
            _pause_runner(paused),
        )
        sub.add_argument("--backupconfig", help="Name of the BackupConfiguration")

    state = _command(
        commands,
        "status",
        "Show every BackupConfiguration's last session, next run, and its repository's size and integrity.",
        f"{PROG} status [flags]",
        f"  {PROG} status -n demo\n  {PROG} status --all-namespaces",
        flags,
        _status,
    )
    state.add_argument(
        "-A", "--all-namespaces", action="store_true", help="List the configurations across all namespaces"
    )

    _repository_parsers(commands, flags)
    _object_parsers(commands, flags)
    return top


@contextlib.asynccontextmanager
async def _client(target: Target) -> AsyncIterator[RestClient]:
    """A RestClient for ``target``, closed on exit."""
    api = connect(target)
    try:
        yield api
    finally:
        await api.close()


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run ``kubectl stash <argv>``, writing to ``out`` and ``err``; the exit status."""
    top = parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = top.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or bad usage (2), printed by argparse
        return int(exc.code or 0)
    if getattr(args, "run", None) is None:
        top.print_help(out)
        return 0
    try:
        target = resolve(args.kubeconfig, args.context, args.namespace)
        asyncio.run(args.run(args, target, out))
    except PluginError as exc:
        err.write(f"error: {exc}\n")
        return 1
    except (KubeError, TransportError, OSError) as exc:  # the API server unreachable or refusing
        err.write(f"error: {exc}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kubectl-stash`` (kubectl finds it on the PATH as ``kubectl stash``)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
