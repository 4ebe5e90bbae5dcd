"""The local node's container images keep the promises the chart, the operator and the kubelet rely on.

The images are built once per session with ``build_images()`` (buildah, debootstrap; root) and run in
a private containerd started for this module (its own root, state, socket, fifo and runc folders under
the session's temp dir, the CRI plugin off), so a node's containerd is neither needed nor touched.
Every container runs with a read-only root filesystem unless a test says otherwise.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.polling import wait_until

from stashlet.api import versions
from stashlet.localcluster import images, tools

pytestmark = pytest.mark.images

CHECKOUT = Path(__file__).resolve().parents[2]
NEEDS = ("buildah", "debootstrap", "containerd", "ctr", "runc", "go")
SHELLS = ("sh", "bash", "dash", "ash", "busybox", "zsh")


@pytest.fixture(scope="session")
def archives() -> dict[str, images.ImageArchive]:
    """Every image, built (or taken from the cache) once per session."""
    missing = [program for program in NEEDS if shutil.which(program) is None]
    if os.geteuid() != 0 or missing:
        # Never skipped: a machine that cannot build the images cannot run the node either, and says so.
        pytest.fail(f"building and running images needs root and {', '.join(NEEDS)}; missing: {missing}")
    return {archive.name: archive for archive in images.build_images(log=False)}


@dataclass
class Containerd:
    address: str
    namespace: str
    folder: Path

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", self.address, "--namespace", self.namespace, *args]
        proc = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run_flags(self, *, read_only: bool) -> list[str]:
        flags = ["--fifo-dir", str(self.folder / "fifo"), "--runc-root", str(self.folder / "runc")]
        return [*flags, "--read-only"] if read_only else flags

    def run(self, image: str, *argv: str, read_only: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (instead of the image's entrypoint and command) to completion; never raises."""
        name = f"t-{uuid.uuid4().hex[:12]}"
        return self.ctr("run", "--rm", *self.run_flags(read_only=read_only), image, name, *argv, check=False)


def _mounted_under(folder: Path) -> list[str]:
    prefix = str(folder) + "/"
    return [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]


@pytest.fixture(scope="session")
def containerd(
    archives: dict[str, images.ImageArchive], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Containerd]:
    """A private containerd (no CRI) holding every image, stopped and removed after the session."""
    folder = tmp_path_factory.mktemp("containerd")
    run_containerd_existed = Path("/run/containerd").exists()
    config = folder / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{folder}/root"\n'
        f'state = "{folder}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{folder}/containerd.sock"\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{folder}/opt"\n'
    )
    log = (folder / "containerd.log").open("w")
    process = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    daemon = Containerd(f"{folder}/containerd.sock", f"stashlet-images-{os.getpid()}", folder)
    try:

        def answers() -> bool:
            assert process.poll() is None, (folder / "containerd.log").read_text()
            return daemon.ctr("version", check=False).returncode == 0

        wait_until(answers, what="containerd to answer", timeout=30)
        images.load_images(
            archives.values(), containerd_address=daemon.address, namespace=daemon.namespace, log=False
        )
        yield daemon
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if not _mounted_under(folder):
            shutil.rmtree(folder, ignore_errors=True)
        if not run_containerd_existed:
            # The runc shim of containerd 1.6 puts its sockets in /run/containerd/s whatever the config
            # says; leave the host as it was (rmdir only removes empty folders: a node's stays).
            for leftover in ("/run/containerd/s", "/run/containerd"):
                with contextlib.suppress(OSError):
                    Path(leftover).rmdir()


def _layers(archive: images.ImageArchive, *, skip: int = 0) -> Iterator[tarfile.TarInfo]:
    """Every entry of every layer of a docker archive (after the first ``skip`` layers)."""
    with tarfile.open(archive.path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"][skip:]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                yield from inner.getmembers()


def _file_in_image(archive: images.ImageArchive, path: str) -> bytes:
    """The content of a regular file in the image's last layer that has it."""
    content: bytes | None = None
    with tarfile.open(archive.path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                for member in inner.getmembers():
                    if member.name.removeprefix("./") == path.lstrip("/") and member.isfile():
                        content = inner.extractfile(member).read()  # type: ignore[union-attr]
    assert content is not None, f"{path} not in {archive.name}"
    return content


def _normalize(reference: str) -> str:
    """A docker reference in full, as containerd names imports (busybox:1 is docker.io/library/busybox:1)."""
    domain = reference.split("/", 1)[0]
    if "/" not in reference or ("." not in domain and ":" not in domain and domain != "localhost"):
        reference = f"docker.io/{reference}"
    if reference.startswith("docker.io/") and reference.count("/") == 1:
        reference = reference.replace("docker.io/", "docker.io/library/", 1)
    return reference


def _config(archives: dict[str, images.ImageArchive], name: str) -> dict[str, Any]:
    return images.image_config(archives[name])


# --- names ------------------------------------------------------------------------------------------


def test_image_names_follow_the_chart_and_the_pins() -> None:
    """The stashlet images carry the chart's appVersion and repositories; the others their pinned versions."""
    chart = yaml.safe_load((CHECKOUT / "charts/stashlet/Chart.yaml").read_text())
    values = yaml.safe_load((CHECKOUT / "charts/stashlet/values.yaml").read_text())
    assert chart["appVersion"] == images.APP_VERSION
    assert f"docker.io/{values['agent']['image']['repository']}:{chart['appVersion']}" == images.AGENT_IMAGE
    assert (
        f"docker.io/{values['operator']['image']['repository']}:{chart['appVersion']}"
        == images.OPERATOR_IMAGE
    )
    gateway = values["pushgateway"]["image"]
    assert f"docker.io/{gateway['repository']}:{gateway['tag']}" == images.PUSHGATEWAY_IMAGE
    assert gateway["tag"] == versions.PUSHGATEWAY
    assert images.REST_SERVER_IMAGE.endswith(":" + versions.RESTIC_REST_SERVER.removeprefix("v"))
    assert images.COREDNS_IMAGE.endswith(":" + versions.COREDNS.removeprefix("v"))
    assert len(set(images.ALL_IMAGES)) == 7


# --- building and loading ---------------------------------------------------------------------------


def test_every_image_is_built_into_an_archive(archives: dict[str, images.ImageArchive]) -> None:
    """build_images returns one docker archive per image, named inside as the image is named."""
    assert tuple(archives) == images.ALL_IMAGES
    for name, archive in archives.items():
        assert archive.path.is_file()
        assert archive.path.is_relative_to(tools.cache_dir() / "images")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", archive.config_digest)
        with tarfile.open(archive.path) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert len(manifest) == 1
        tags = {_normalize(tag) for tag in manifest[0]["RepoTags"]}
        assert tags == {name}


def test_a_second_build_reuses_the_cache(archives: dict[str, images.ImageArchive]) -> None:
    """With unchanged inputs nothing is rebuilt: the same archives, untouched, within seconds.

    Sources edited meanwhile rebuild agent and operator under a new key; the other five cannot change.
    """
    mtimes = {name: a.path.stat().st_mtime_ns for name, a in archives.items()}
    started = time.monotonic()
    again = {a.name: a for a in images.build_images(log=False)}
    seconds = time.monotonic() - started
    unchanged = [name for name in images.ALL_IMAGES if again[name].key == archives[name].key]
    assert set(images.ALL_IMAGES) - set(unchanged) <= {images.AGENT_IMAGE, images.OPERATOR_IMAGE}
    for name in unchanged:
        assert again[name] == archives[name]
        assert again[name].path.stat().st_mtime_ns == mtimes[name]
    if len(unchanged) == len(images.ALL_IMAGES):
        assert seconds < 10


def test_loading_again_skips_what_containerd_holds(
    archives: dict[str, images.ImageArchive], containerd: Containerd, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every image is in containerd under its name; a second load_images imports nothing."""
    listed = containerd.ctr("images", "ls", "-q").stdout.split()
    assert set(images.ALL_IMAGES) <= set(listed)
    capfd.readouterr()
    images.load_images(
        archives.values(), containerd_address=containerd.address, namespace=containerd.namespace
    )
    assert "loading image" not in capfd.readouterr().err


# --- agent and operator -----------------------------------------------------------------------------


def test_agent_image_runs_as_nonroot_without_a_shell(
    archives: dict[str, images.ImageArchive], containerd: Containerd
) -> None:
    """The agent runs as 65532:65532 and no layer ships a shell (nor the build's mount points)."""
    assert _config(archives, images.AGENT_IMAGE)["User"] == "65532:65532"
    probe = (
        "import json, os; print(json.dumps([os.getuid(), os.getgid(), "
        "[p for p in ('/bin/sh', '/usr/bin/sh', '/bin/bash', '/bin/dash', '/bin/ls', '/usr/bin/env') "
        "if os.path.lexists(p)]]))"
    )
    proc = containerd.run(images.AGENT_IMAGE, "/venv/bin/python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [65532, 65532, []]
    names = {m.name.removeprefix("./") for m in _layers(archives[images.AGENT_IMAGE])}
    assert not {n for n in names if n.rsplit("/", 1)[-1] in SHELLS and "/bin/" in f"/{n}"}
    # The build mounts the host's CA bundle and runs go and pip: none of it may reach a layer above
    # the distroless base.
    above_base = {m.name.removeprefix("./") for m in _layers(archives[images.AGENT_IMAGE], skip=1)}
    build_only = ("go", "root", "etc/ssl", "usr/local/share/ca-certificates", "etc/pip.conf")
    assert not {n for n in above_base if n.startswith(build_only)}


def test_agent_image_ships_the_pinned_restic(containerd: Containerd) -> None:
    """/usr/local/bin/restic is the version the project pins."""
    proc = containerd.run(images.AGENT_IMAGE, "/usr/local/bin/restic", "version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"restic {versions.RESTIC} ")


@pytest.mark.parametrize(
    ("image", "script"),
    [(images.AGENT_IMAGE, "stashlet-agent"), (images.OPERATOR_IMAGE, "stashlet-operator")],
)
def test_entry_point_answers_help_on_a_read_only_root(
    archives: dict[str, images.ImageArchive], containerd: Containerd, image: str, script: str
) -> None:
    """The image's entry point is the console script, and it starts on a read-only root filesystem."""
    config = _config(archives, image)
    assert config["Entrypoint"] == [f"/venv/bin/{script}"]
    assert config["User"] == "65532:65532"
    proc = containerd.run(image, f"/venv/bin/{script}", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


@pytest.mark.parametrize(
    ("image", "own", "absent"),
    [
        (images.AGENT_IMAGE, "stashlet.agent", ("stashlet.operator", "stashlet.localcluster")),
        (images.OPERATOR_IMAGE, "stashlet.operator", ("stashlet.agent", "stashlet.localcluster")),
    ],
)
def test_each_image_holds_its_own_code_and_the_shared_vocabulary_only(
    containerd: Containerd, image: str, own: str, absent: tuple[str, ...]
) -> None:
    """The agent image has no operator code and the operator image no agent code (neither has the local
    cluster); both have the shared stashlet.api and stashlet.kube, and only their own console script."""
    probe = (
        "import importlib.util, json, os; "
        f"names = ['stashlet.api', 'stashlet.kube', {own!r}, *{list(absent)!r}]; "
        "print(json.dumps([{n: importlib.util.find_spec(n) is not None for n in names}, "
        "sorted(s for s in os.listdir('/venv/bin') if s.startswith('stashlet'))]))"
    )
    proc = containerd.run(image, "/venv/bin/python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    found, scripts = json.loads(proc.stdout)
    assert found == {"stashlet.api": True, "stashlet.kube": True, own: True} | dict.fromkeys(absent, False)
    assert scripts == [f"stashlet-{own.rsplit('.', 1)[1]}"]


def test_root_filesystem_really_is_read_only(containerd: Containerd) -> None:
    """The runs above are meaningful: writing anywhere on the root filesystem fails with EROFS."""
    probe = """
import errno
try:
    open("/tmp/x", "w")
except OSError as e:
    print(errno.errorcode[e.errno])
"""
    proc = containerd.run(images.OPERATOR_IMAGE, "/venv/bin/python", "-c", probe)
    assert proc.stdout.strip() == "EROFS", proc.stderr


def test_distroless_python_has_what_the_standard_library_loads(containerd: Containerd) -> None:
    """Every lib-dynload module imports, TLS finds the CA bundle, tz and service names resolve, and the
    agent's compiled dependencies load: the distroless base lacks no library; the operator's HTTP stack
    (the ``operator`` extra) is not in the agent image."""
    probe = r"""
import importlib, importlib.util, pathlib, socket, ssl, sys, sysconfig, zoneinfo
dynload = pathlib.Path(sysconfig.get_path("platstdlib")) / "lib-dynload"
failed = []
for so in sorted(dynload.glob("*.so")):
    name = so.name.split(".")[0]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc}")
for name in ("pydantic", "pydantic_core", "yaml", "h11", "wsproto", "prometheus_client"):
    importlib.import_module(name)
for name in ("aiohttp", "kubernetes_asyncio"):  # the operator's extra: not in the agent image
    assert importlib.util.find_spec(name) is None, name
assert not failed, failed
assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 100
assert zoneinfo.ZoneInfo("Europe/Berlin").key == "Europe/Berlin"
assert socket.getservbyname("https") == 443
print(sys.version_info[:2], "ok")
"""
    proc = containerd.run(images.AGENT_IMAGE, "/venv/bin/python", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3, 11) ok"


# --- the pinned binaries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "binary", "path"),
    [
        (images.PUSHGATEWAY_IMAGE, "pushgateway", "/bin/pushgateway"),
        (images.REST_SERVER_IMAGE, "rest-server", "/usr/bin/rest-server"),
        (images.COREDNS_IMAGE, "coredns", "/coredns"),
    ],
)
def test_binary_images_hold_the_pinned_build(
    archives: dict[str, images.ImageArchive], containerd: Containerd, image: str, binary: str, path: str
) -> None:
    """Each holds exactly the pinned binary tools builds, as its entry point, and it runs there."""
    built = tools.ensure(binary, log=False).read_bytes()
    assert hashlib.sha256(_file_in_image(archives[image], path)).digest() == hashlib.sha256(built).digest()
    assert _config(archives, image)["Entrypoint"] == [path]
    proc = containerd.run(image, path, "-version" if binary == "coredns" else "--help")
    assert proc.returncode == 0, proc.stderr


def test_pushgateway_image_is_shaped_like_upstream(archives: dict[str, images.ImageArchive]) -> None:
    """As prom/pushgateway: user nobody (65534), port 9091, working directory /pushgateway."""
    config = _config(archives, images.PUSHGATEWAY_IMAGE)
    assert config["User"] == "65534"
    assert "9091/tcp" in config["ExposedPorts"]
    assert config["WorkingDir"] == "/pushgateway"


def test_coredns_reports_the_pinned_version(containerd: Containerd) -> None:
    """/coredns is the CoreDNS the project pins."""
    proc = containerd.run(images.COREDNS_IMAGE, "/coredns", "-version")
    assert f"CoreDNS-{versions.COREDNS.removeprefix('v')}" in proc.stdout


# --- pause and busybox ------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGINT"])
def test_pause_stops_on_a_signal(containerd: Containerd, signal: str) -> None:
    """The sandbox program runs until SIGTERM or SIGINT, then exits at once (PID 1 ignores signals it
    does not handle, so stopping proves the handler)."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    containerd.ctr("run", "--detach", *containerd.run_flags(read_only=True), images.PAUSE_IMAGE, name)
    try:
        wait_until(lambda: "RUNNING" in _task_status(containerd, name), what="pause running", timeout=10)
        containerd.ctr("tasks", "kill", "--signal", signal, name)

        def stopped() -> bool:
            return name not in containerd.ctr("tasks", "ls").stdout or "STOPPED" in _task_status(
                containerd, name
            )

        wait_until(stopped, what=f"pause stopped by {signal}", timeout=10, interval=0.1)
    finally:
        containerd.ctr("tasks", "kill", "--signal", "SIGKILL", name, check=False)
        wait_until(lambda: "RUNNING" not in _task_status(containerd, name), what=f"{name} killed", timeout=10)
        containerd.ctr("tasks", "delete", "--force", name, check=False)
        containerd.ctr("containers", "delete", name, check=False)


def _task_status(containerd: Containerd, name: str) -> str:
    for line in containerd.ctr("tasks", "ls").stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == name:
            return fields[-1]
    return ""


def test_pause_runs_as_65535(archives: dict[str, images.ImageArchive]) -> None:
    """Like registry.k8s.io/pause: /pause as entry point, user 65535."""
    config = _config(archives, images.PAUSE_IMAGE)
    assert config["Entrypoint"] == ["/pause"]
    assert config["User"] == "65535:65535"


def test_busybox_has_a_shell_and_nc(archives: dict[str, images.ImageArchive], containerd: Containerd) -> None:
    """busybox: `sh -c` with redirection and sleep works, applets are in /bin (for exec without a shell),
    and nc carries bytes over TCP (Debian's small nc: no -z; probes send nothing and check the exit)."""
    assert _config(archives, images.BUSYBOX_IMAGE)["Cmd"] == ["sh"]
    script = (
        "echo x > /tmp/f && cat /tmp/f && readlink /bin/nc && readlink /bin/sleep"
        " && (nc -l -p 9999 > /tmp/got &) && sleep 1 && echo over-tcp | nc 127.0.0.1 9999 && sleep 1"
        " && cat /tmp/got"
    )
    proc = containerd.run(images.BUSYBOX_IMAGE, "/bin/sh", "-c", script, read_only=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["x", "busybox", "busybox", "over-tcp"]
    assert containerd.run(images.BUSYBOX_IMAGE, "sleep", "0").returncode == 0
