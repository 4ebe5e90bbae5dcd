"""What a real node changes on the host, recorded before it starts and undone when it stops.

A kubelet, containerd, CNI and kube-proxy change the machine they run on: iptables rules and chains,
sysctls, a network bridge, cgroups, mounts and a few fixed directories. ``HostRecord.take`` writes
down how things were (the whole iptables rule set, the sysctl values, which fixed paths existed);
``undo`` puts back exactly that: it removes the rules and chains that were added (never one that was
there before), resets each sysctl, deletes the bridge, unmounts what was mounted below the node's
folders, removes the node's cgroups and the fixed paths that did not exist before. It is written to a
JSON file, so a later ``stashlet-cluster down`` (or the next ``up`` after a crash) can undo it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

SYSCTLS: tuple[str, ...] = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
)
"""The sysctls CNI, kube-proxy and we turn on."""

FIXED_PATHS: tuple[str, ...] = (
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/tmp/hostpath_pv",  # noqa: S108 (where the controller manager's host-path provisioner writes)
    "/etc/cni",
    "/opt/cni",
    "/usr/libexec/kubernetes",
    "/var/lib/kubelet",
)
"""Paths the node's parts write whatever their configuration says (removed only if they were absent)."""

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAMES = ("kubepods", "kubepods.slice")


@dataclass
class HostRecord:
    """How the host was before the node started, and what the node owns."""

    bridge: str
    node_dirs: list[str]
    """Folders whose mounts are the node's (kubelet root, containerd state, ...)."""
    iptables: dict[str, str] = field(default_factory=dict)
    """``iptables-save`` / ``ip6tables-save`` output by command."""
    sysctls: dict[str, str] = field(default_factory=dict)
    absent_paths: list[str] = field(default_factory=list)

    @classmethod
    def take(cls, bridge: str, node_dirs: list[Path]) -> HostRecord:
        """Write down the host as it is now."""
        record = cls(bridge=bridge, node_dirs=[str(d) for d in node_dirs])
        for save in ("iptables-save", "ip6tables-save"):
            record.iptables[save] = _run([save], check=True)
        for key in SYSCTLS:
            with contextlib.suppress(OSError):
                record.sysctls[key] = (Path("/proc/sys") / key).read_text().strip()
        record.absent_paths = [p for p in FIXED_PATHS if not os.path.lexists(p)]
        return record

    def save(self, path: Path) -> None:
        """Write the record as JSON."""
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> HostRecord:
        """Read a record written by :meth:`save`."""
        return cls(**json.loads(path.read_text()))

    def undo(self) -> list[str]:
        """Put the host back as recorded; return what was done, one line each.

        Call it once every process of the node has stopped.
        """
        done: list[str] = []
        done += kill_cgroup_processes()
        done += unmount_below([*self.node_dirs, "/run/netns", "/run/containerd"])
        done += remove_cgroups()
        if _run(["ip", "link", "show", self.bridge]).strip():
            _run(["ip", "link", "delete", self.bridge])
            done.append(f"deleted interface {self.bridge}")
        for save, before in self.iptables.items():
            done += _undo_iptables(save.replace("-save", ""), before)
        for key, value in self.sysctls.items():
            target = Path("/proc/sys") / key
            with contextlib.suppress(OSError):
                if target.read_text().strip() != value:
                    target.write_text(value)
                    done.append(f"sysctl {key.replace('/', '.')} = {value}")
        for path in self.absent_paths:
            if os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path}")
        return done

    def leftovers(self) -> list[str]:
        """What still differs from the record (empty once :meth:`undo` did its work): one line each."""
        found: list[str] = []
        for save, before in self.iptables.items():
            old_rules, old_chains = _parse(before)
            new_rules, new_chains = _parse(_run([save], check=True))
            for table, rules in new_rules.items():
                found += [f"{save}: {table}: {r}" for r in rules if r not in old_rules.get(table, [])]
                found += [
                    f"{save}: {table}: chain {c}"
                    for c in new_chains.get(table, [])
                    if c not in old_chains.get(table, [])
                ]
        for key, value in self.sysctls.items():
            with contextlib.suppress(OSError):
                if (now := (Path("/proc/sys") / key).read_text().strip()) != value:
                    found.append(f"sysctl {key.replace('/', '.')} is {now}, was {value}")
        if _run(["ip", "link", "show", self.bridge]).strip():
            found.append(f"interface {self.bridge}")
        found += [f"path {p}" for p in self.absent_paths if os.path.lexists(p)]
        found += [f"mount {m}" for m in _mounts_below([*self.node_dirs, "/run/netns", "/run/containerd"])]
        found += [f"cgroup {d}" for d in _cgroup_dirs()]
        return found


def kill_cgroup_processes() -> list[str]:
    """SIGKILL every process still in a ``kubepods`` cgroup (containers a dead node left behind)."""
    pids: set[int] = set()
    for procs in _cgroup_dirs():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (procs / "cgroup.procs").read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return [f"killed {len(pids)} leftover container processes"] if pids else []


def _cgroup_dirs() -> list[Path]:
    """Every cgroup below a ``kubepods`` root in every hierarchy, deepest first."""
    found: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]:
        for name in CGROUP_NAMES:
            top = hierarchy / name
            if top.is_dir():
                found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_cgroups() -> list[str]:
    """Remove the node's cgroups, deepest first (each must be empty of processes by now)."""
    removed = 0
    for directory in _cgroup_dirs():
        try:
            directory.rmdir()
            removed += 1
        except OSError:
            continue
    return [f"removed {removed} cgroups"] if removed else []


def unmount_below(prefixes: list[str]) -> list[str]:
    """Unmount everything mounted at or below ``prefixes``, deepest first; return one line per mount.

    A point can carry several stacked mounts (a network namespace's file is bound onto
    ``/run/netns/<name>`` and shows again through the shared ``/run/netns``), so this goes round until
    nothing is left or a round unmounts nothing more.
    """
    done: list[str] = []
    for _ in range(10):
        points = _mounts_below(prefixes)
        unmounted = [
            point
            for point in points
            if subprocess.run(["umount", "-l", point], capture_output=True, check=False).returncode == 0
        ]
        done += [f"unmounted {point}" for point in unmounted if f"unmounted {point}" not in done]
        if not unmounted:
            break
    return done


def _mounts_below(prefixes: list[str]) -> list[str]:
    """Mount points at or below ``prefixes``, deepest first."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            mounts.append(point)
    return sorted(set(mounts), key=len, reverse=True)


def _undo_iptables(command: str, before: str) -> list[str]:
    """Delete the rules and chains ``command`` has now that the ``before`` dump did not have."""
    now = _run([f"{command}-save"], check=True)
    old_rules, old_chains = _parse(before)
    new_rules, new_chains = _parse(now)
    done: list[str] = []
    for table, rules in new_rules.items():
        for rule in reversed(rules):
            if rule not in old_rules.get(table, []):
                args = shlex.split(rule)
                args[0] = "-D"
                if (
                    subprocess.run([command, "-t", table, *args], capture_output=True, check=False).returncode
                    == 0
                ):
                    done.append(f"{command} -t {table} {shlex.join(args)}")
        added = [c for c in new_chains.get(table, []) if c not in old_chains.get(table, [])]
        for chain in added:
            subprocess.run([command, "-t", table, "-F", chain], capture_output=True, check=False)
        for chain in added:
            if (
                subprocess.run(
                    [command, "-t", table, "-X", chain], capture_output=True, check=False
                ).returncode
                == 0
            ):
                done.append(f"{command} -t {table} -X {chain}")
    return done


def _parse(dump: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Rules (``-A ...`` lines) and user chains by table, from an ``iptables-save`` dump."""
    rules: dict[str, list[str]] = {}
    chains: dict[str, list[str]] = {}
    table = ""
    for line in dump.splitlines():
        if line.startswith("*"):
            table = line[1:]
            rules.setdefault(table, [])
            chains.setdefault(table, [])
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            if policy == "-":
                chains[table].append(name)
        elif line.startswith("-A "):
            rules[table].append(line)
    return rules, chains


def _run(argv: list[str], *, check: bool = False) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout if proc.returncode == 0 else ""
