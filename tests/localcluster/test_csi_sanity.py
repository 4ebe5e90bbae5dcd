"""The local node's CSI driver passes csi-sanity, the Kubernetes CSI project's conformance suite.

The upstream CSI hostpath driver cannot be fetched here (the Go module proxy refuses
``github.com/kubernetes-csi/csi-driver-host-path``, every version), so the node runs stashlet's own
driver (``localcluster/.../csidriver/main.go``). This test holds it to the same bar upstream drivers
are held to: the pinned csi-sanity (``tools.CSI_SANITY``, built from the Go module proxy) drives the
driver's socket through every spec its advertised capabilities call for (volumes, volumes from
snapshots, snapshots, node publish with real bind mounts), and none may fail. A capability the driver
does not advertise is skipped by the suite itself; the test also pins which ones run, so that a driver
change that stops advertising snapshots cannot pass by skipping them.
"""

from __future__ import annotations

import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from stashlet.localcluster import tools
from stashlet.localcluster.csiimages import build_driver

pytestmark = [pytest.mark.images]

MUST_PASS = (
    "Identity Service Probe",
    "CreateVolume should create volume from an existing source snapshot",
    "CreateSnapshot [Controller Server] should succeed when requesting to create a snapshot with already "
    "existing name and same source volume ID",
    "ListSnapshots [Controller Server] should return snapshots that match the specified source volume id",
    "DeleteSnapshot [Controller Server] should return appropriate values",
    "Node Service should work",
    "NodeUnpublishVolume should remove target path",
)
"""Specs that exercise what stashlet relies on: snapshots, restoring a volume from one, publishing it."""


@pytest.fixture
def driver_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The driver built from its source and serving a socket in a short folder (a socket path is at most
    107 bytes)."""
    if os.geteuid() != 0:
        pytest.fail("csi-sanity publishes volumes with bind mounts: run the images lane as root")
    work = tmp_path_factory.mktemp("csi-sanity")
    binary = build_driver(work, work / "build.log")
    socket = work / "csi.sock"
    log = (work / "driver.log").open("w")
    proc = subprocess.Popen(
        [
            str(binary),
            f"--endpoint={socket}",
            "--drivername=hostpath.csi.sanity.local",
            "--nodeid=sanity-node",
            f"--datadir={work / 'data'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the driver did not serve {socket}: {(work / 'driver.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield socket
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_the_node_driver_passes_csi_sanity(driver_socket: Path) -> None:
    work = driver_socket.parent
    junit = work / "junit.xml"
    run = subprocess.run(
        [
            str(tools.ensure("csi-sanity")),
            f"--csi.endpoint=unix://{driver_socket}",
            f"--csi.mountdir={work / 'mnt'}",
            f"--csi.stagingdir={work / 'staging'}",
            f"--csi.junitfile={junit}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outcomes: dict[str, str] = {
        case.get("name", ""): case.get("status", "")
        for case in ET.parse(junit).iter("testcase")  # noqa: S314 (csi-sanity's own report, written here)
    }
    failed = [name for name, status in outcomes.items() if status == "failed"]
    assert run.returncode == 0 and not failed, f"csi-sanity failed {failed}:\n{run.stdout[-4000:]}"
    for spec in MUST_PASS:
        matching = {status for name, status in outcomes.items() if spec in name}
        assert matching == {"passed"}, f"{spec!r}: {matching or 'not run'}"
    counts = Counter(outcomes.values())
    assert counts["passed"] >= 45, counts
