"""Repositories written the way Stash writes them: plain restic at the pinned version, run exactly as
Stash's restic wrapper runs it (stashed/apimachinery ``pkg/restic``), so a test holds what a migrating
user's bucket holds.

- ``init`` as ``initRepository``: ``restic init --no-cache``; format 2 is restic's default, format 1
  (``--repository-version 1``) is what Stash's older restic (< 0.14) wrote.
- ``backup`` as ``runBackup``: one ``restic backup <path> --quiet --json --host <host> [--exclude <e>...]
  [args...] --no-cache`` per target path, so every path is a snapshot (and a snapshot group) of its own;
  no tags.
- ``forget`` as ``tryCleanup`` after a session: ``restic forget --quiet --json [--keep-last N ...]
  [--keep-tag T...] [--prune] [--dry-run] --no-cache``, without ``--host``, grouped by restic's default
  (host and paths).
- the host names of ``GetHostName`` (stashed/stash ``pkg/util/util.go``): :func:`stash_host`.

Stash runs in the pod, where the data sits at the pod's mount path (``/source/data``). Given
``volumes`` (mount path -> directory on this machine), :meth:`StashRestic.backup` runs restic in a
private mount namespace chrooted into an empty tmpfs root where each directory is mounted at its mount path
(root only: ``unshare --mount``), so the snapshots name the pod's paths and nothing is created on this
machine outside the test's temporary directory.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HOST = "host-0"
"""Stash's ``apis.DefaultHost``."""

_RETENTION_FLAGS = (
    ("keepLast", "--keep-last"),
    ("keepHourly", "--keep-hourly"),
    ("keepDaily", "--keep-daily"),
    ("keepWeekly", "--keep-weekly"),
    ("keepMonthly", "--keep-monthly"),
    ("keepYearly", "--keep-yearly"),
)


def stash_host(kind: str, *, pod: str = "", node: str = "", alias: str = "") -> str:
    """The restic host Stash's ``GetHostName`` gives a sidecar or init-container of a ``kind`` workload:
    a StatefulSet's pod ``<alias|host>-<last '-' field of the pod name>``, a DaemonSet's
    ``<alias->node``, anything else ``<alias>`` or ``host-0``."""
    if kind == "StatefulSet":
        ordinal = pod.rsplit("-", maxsplit=1)[-1]
        return f"{alias}-{ordinal}" if alias else f"host-{ordinal}"
    if kind == "DaemonSet":
        return f"{alias}-{node}" if alias else node
    return alias or DEFAULT_HOST


def forget_args(policy: Mapping[str, Any]) -> list[str]:
    """The flags of Stash's ``tryCleanup`` for a Repository's ``retentionPolicy`` (its camelCase fields),
    in Stash's order."""
    args: list[str] = []
    for key, flag in _RETENTION_FLAGS:
        value = int(policy.get(key) or 0)
        if value > 0:
            args += [flag, str(value)]
    for tag in policy.get("keepTags") or []:
        args += ["--keep-tag", str(tag)]
    if policy.get("prune"):
        args.append("--prune")
    if policy.get("dryRun"):
        args.append("--dry-run")
    return args


@dataclass
class StashRestic:
    """Plain restic ``binary`` on the repository ``repository`` (``RESTIC_REPOSITORY``: a local path or
    ``rest:http://...``) with ``password``; ``env`` adds backend variables (as Stash exports them from the
    storage Secret)."""

    binary: Path
    repository: str
    password: str
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 180

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": tempfile.gettempdir(),
            "TMPDIR": "/tmp",
            "RESTIC_REPOSITORY": self.repository,
            "RESTIC_PASSWORD": self.password,
            **self.env,
        }

    def run(self, *args: str, volumes: Mapping[str, Path] | None = None) -> str:
        """``restic <args>``; its stdout. Fails the test with restic's words on a non-zero exit."""
        argv = [str(self.binary), *args]
        if volumes:
            argv = _in_private_root(argv, self.binary, volumes, self.repository)
        done = subprocess.run(
            argv, env=self._env(), capture_output=True, text=True, check=False, timeout=self.timeout
        )
        assert done.returncode == 0, f"restic {shlex.join(args)} exited {done.returncode}: {done.stderr}"
        return done.stdout

    def init(self, version: int = 2) -> None:
        """``restic init`` as Stash runs it; ``version`` 1 is the format older Stash (restic < 0.14) wrote."""
        self.run("init", *(["--repository-version", str(version)] if version != 2 else []), "--no-cache")

    def backup(
        self,
        host: str,
        paths: Sequence[str],
        *,
        volumes: Mapping[str, Path] | None = None,
        excludes: Sequence[str] = (),
        args: Sequence[str] = (),
    ) -> list[str]:
        """One backup session of a host: one ``restic backup`` per path, in order; the snapshot IDs."""
        ids: list[str] = []
        for path in paths:
            argv = ["backup", path, "--quiet", "--json", "--host", host]
            for pattern in excludes:
                argv += ["--exclude", pattern]
            out = self.run(*argv, *args, "--no-cache", volumes=volumes)
            summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line][-1]
            ids.append(str(summary["snapshot_id"]))
        return ids

    def forget(self, policy: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Stash's cleanup after a session: ``restic forget`` with the policy's flags; restic's JSON groups
        (each with ``keep`` and ``remove``)."""
        flags = forget_args(policy)
        assert flags, "Stash runs no forget for a policy without a keep flag"
        out = self.run("forget", "--quiet", "--json", *flags, "--no-cache")
        line = next((line for line in out.splitlines() if line.startswith("[")), "[]")
        groups: list[dict[str, Any]] = json.loads(line)
        return groups

    def snapshots(self, *args: str) -> list[dict[str, Any]]:
        """``restic snapshots --json`` (read without a lock)."""
        found: list[dict[str, Any]] = json.loads(
            self.run("snapshots", "--json", "--no-lock", "--no-cache", *args)
        )
        return found

    def config_version(self) -> int:
        """The repository format restic reports (``cat config``)."""
        return int(json.loads(self.run("cat", "config", "--no-cache"))["version"])


def _in_private_root(
    argv: list[str], binary: Path, volumes: Mapping[str, Path], repository: str
) -> list[str]:
    """``argv`` chrooted into an empty tmpfs root holding the restic binary, ``/tmp``, a local repository at
    its own path, and each volume at its mount path, in a private mount namespace."""
    mounts = dict(volumes)
    if repository.startswith("/"):
        mounts[repository] = Path(repository)
    root = "/mnt"  # covered by a tmpfs in the private namespace only
    steps = [
        f"mount -t tmpfs stash-root {root}",
        f"mkdir -p {root}/tmp {root}/bin {root}/etc",
        f"touch {root}/bin/restic",
        f"mount --bind {shlex.quote(str(binary))} {root}/bin/restic",
    ]
    for target, source in mounts.items():
        quoted = shlex.quote(target)
        steps += [f"mkdir -p {root}{quoted}", f"mount --bind {shlex.quote(str(source))} {root}{quoted}"]
    steps.append(f'exec chroot {root} /bin/restic "$@"')
    script = " && ".join(steps)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *argv[1:]]
