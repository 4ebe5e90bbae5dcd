"""Undoing a node's iptables changes, on the real iptables of a network namespace made for the test."""

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stashlet.localcluster.hostchanges import _mounts_below, _parse, unmount_below


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace (its own iptables), deleted afterwards; ``/run/netns``, which
    ``ip netns`` makes (and mounts onto itself), goes too when it was not there before."""
    name = f"stashlet-test-{uuid.uuid4().hex[:8]}"
    folder = Path("/run/netns")
    existed = folder.exists()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
        if not existed:
            unmount_below([str(folder)])
            folder.rmdir()


def in_netns(netns: str, script: str) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rules(dump: str) -> dict[str, tuple[list[str], list[str]]]:
    """Rules and user chains by table, leaving out tables that hold neither (iptables-save lists a
    table once it was used, even when it is empty again)."""
    found_rules, chains = _parse(dump)
    return {t: (found_rules[t], chains[t]) for t in found_rules if found_rules[t] or chains[t]}


def test_undo_removes_what_was_added_and_keeps_what_was_there(netns: str) -> None:
    """Rules and chains added after the record (in two tables, with quoted comments, jumping to new
    chains) are all removed; a chain and rule that existed before the record stay as they were."""
    out = in_netns(
        netns,
        """
        import json, subprocess
        from stashlet.localcluster.hostchanges import _run, _undo_iptables

        def ipt(*args):
            subprocess.run(["iptables", *args], check=True)

        ipt("-N", "OLD-CHAIN")
        ipt("-A", "INPUT", "-j", "OLD-CHAIN", "-m", "comment", "--comment", "was here first")
        before = _run(["iptables-save"], check=True)
        ipt("-t", "nat", "-N", "KUBE-SERVICES")
        ipt("-t", "nat", "-A", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals",
            "-j", "KUBE-SERVICES")
        ipt("-N", "KUBE-FIREWALL")
        ipt("-A", "KUBE-FIREWALL", "-d", "127.0.0.0/8", "-j", "DROP")
        ipt("-A", "INPUT", "-j", "KUBE-FIREWALL")
        ipt("-A", "OLD-CHAIN", "-j", "RETURN")
        during = _run(["iptables-save"], check=True)
        done = _undo_iptables("iptables", before)
        after = _run(["iptables-save"])
        print(json.dumps({"before": before, "during": during, "after": after, "done": done}))
        """,
    )
    result = json.loads(out)
    assert rules(result["during"]) != rules(result["before"])
    assert rules(result["after"]) == rules(result["before"])
    assert "OLD-CHAIN" in _parse(result["after"])[1]["filter"]
    assert any("-X KUBE-SERVICES" in line for line in result["done"])
    assert any("-X KUBE-FIREWALL" in line for line in result["done"])


def test_parse_reads_rules_and_user_chains_by_table() -> None:
    """An iptables-save dump: rules by table, and the user chains (not the built-in ones with a policy)."""
    dump = (
        "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-X - [0:0]\n-A INPUT -j KUBE-X\nCOMMIT\n"
        "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
    )
    found_rules, chains = _parse(dump)
    assert found_rules == {"filter": ["-A INPUT -j KUBE-X"], "nat": []}
    assert chains == {"filter": ["KUBE-X"], "nat": []}


def test_unmount_below_takes_stacked_mounts_off_one_point(tmp_path: Path) -> None:
    """Two mounts stacked on one point and one below it are all unmounted, deepest first, and the
    folders are left as plain folders."""
    point = tmp_path / "netns"
    point.mkdir()
    for _ in range(2):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    (point / "inner").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point / "inner")], check=True)
    try:
        assert len(_mounts_below([str(point)])) == 2  # two points, one of them twice
        unmount_below([str(point)])
        assert _mounts_below([str(point)]) == []
        mountinfo = Path("/proc/self/mountinfo").read_text()
        assert str(point) not in mountinfo
    finally:
        for _ in range(4):
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
