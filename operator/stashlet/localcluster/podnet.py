"""Pod networking for the process kubelet: a Linux bridge per cluster, a network namespace per pod.

Each :class:`PodNetwork` takes one /24 out of ``10.245.0.0/16`` (index ``N``: ``10.245.N.0/24``, the
gateway ``10.245.N.1`` on bridge ``slbrN``). Each pod gets network namespace ``slN-pK`` with ``lo`` and
``eth0`` (the far end of veth ``slNvK`` on the bridge) and the next free address. Pods reach each other
and the host (at the gateway) over the bridge; nothing is routed or NATed beyond it.

Two networks never collide: the index is taken under a lock (``/run/stashlet-podnet/lock``), skipped
when any interface already holds an address in its /24, and owned through
``/run/stashlet-podnet/<N>.owner`` (pid and start time). An index whose owner died (a killed test run)
is reclaimed: its namespaces and bridge are deleted first. :meth:`PodNetwork.close` removes all of it.

:class:`Forwarder` copies TCP connections from a listening address, either on the host or inside a
pod's network namespace, to an address on the host. The kubelet uses it to give every pod the
cluster's ``kubernetes`` Service address (``10.0.0.1:443`` here) on the pod's own loopback, forwarded
to the API server on the host's loopback, so pods dial the same address as in a real cluster and the
API server keeps listening on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERNET = ipaddress.IPv4Network("10.245.0.0/16")
RUN_DIR = Path("/run/stashlet-podnet")
NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000


class PodNetworkError(RuntimeError):
    """A network operation failed; the message names the command and what it said."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise PodNetworkError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with (RUN_DIR / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class PodInterface:
    """A pod's network: its namespace (a name under /run/netns) and its address."""

    netns: str
    ip: str
    host_veth: str

    @property
    def netns_path(self) -> Path:
        """The namespace file to enter (``nsenter --net=...``)."""
        return NETNS_DIR / self.netns


class PodNetwork:
    """One bridge and /24 for one cluster; pods are added and removed by key (the pod's UID)."""

    def __init__(self, index: int) -> None:
        """Use an index already taken (see :meth:`create`)."""
        self.index = index
        self.subnet = ipaddress.IPv4Network(f"10.245.{index}.0/24")
        self.gateway = str(self.subnet.network_address + 1)
        self.bridge = f"slbr{index}"
        self._pods: dict[str, PodInterface] = {}
        self._next = 0
        self._closed = False

    @classmethod
    def create(cls, owner_pid: int | None = None) -> PodNetwork:
        """Take a free /24, create its bridge with the gateway address, and record the owner."""
        owner = owner_pid or os.getpid()
        with _locked():
            in_use = _ip("-o", "-4", "addr", "show").stdout
            for index in range(256):
                owner_file = RUN_DIR / f"{index}.owner"
                if owner_file.exists():
                    pid, _, started = owner_file.read_text().partition(" ")
                    if pid.isdigit() and _start_time(int(pid)) == started.strip():
                        continue
                    _reclaim(index)
                    in_use = _ip("-o", "-4", "addr", "show").stdout
                if f" 10.245.{index}." in in_use:
                    continue
                network = cls(index)
                _ip("link", "add", network.bridge, "type", "bridge")
                try:
                    _ip("addr", "add", f"{network.gateway}/24", "dev", network.bridge)
                    _ip("link", "set", network.bridge, "up")
                except PodNetworkError:
                    _ip("link", "del", network.bridge, check=False)
                    raise
                owner_file.write_text(f"{owner} {_start_time(owner)}\n")
                return network
        raise PodNetworkError(f"no free /24 left in {SUPERNET} for a pod network")

    def add(self, key: str) -> PodInterface:
        """Create the namespace and veth of a pod and give it the next free address (idempotent)."""
        if key in self._pods:
            return self._pods[key]
        used = {pod.ip for pod in self._pods.values()}
        hosts = [str(h) for h in self.subnet.hosts() if str(h) != self.gateway and str(h) not in used]
        if not hosts:
            raise PodNetworkError(f"pod network {self.subnet} is full")
        self._next += 1
        pod = PodInterface(f"sl{self.index}-p{self._next}", hosts[0], f"sl{self.index}v{self._next}")
        _ip("netns", "add", pod.netns)
        try:
            _ip("link", "add", pod.host_veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
            _ip("link", "set", pod.host_veth, "master", self.bridge, "up")
            _ip("-n", pod.netns, "link", "set", "lo", "up")
            _ip("-n", pod.netns, "addr", "add", f"{pod.ip}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", pod.netns, "link", "set", "eth0", "up")
            _ip("-n", pod.netns, "route", "add", "default", "via", self.gateway)
        except PodNetworkError:
            _ip("netns", "del", pod.netns, check=False)
            raise
        self._pods[key] = pod
        return pod

    def add_local_address(self, key: str, address: str) -> None:
        """Give a pod's loopback an extra address (a Service IP proxied inside the pod)."""
        _ip("-n", self._pods[key].netns, "addr", "add", f"{address}/32", "dev", "lo")

    def remove(self, key: str) -> None:
        """Delete a pod's namespace (its veth goes with it)."""
        pod = self._pods.pop(key, None)
        if pod is not None:
            _ip("netns", "del", pod.netns, check=False)
            _ip("link", "del", pod.host_veth, check=False)

    def close(self) -> None:
        """Delete every pod namespace, the bridge and the owner record."""
        if self._closed:
            return
        self._closed = True
        for key in list(self._pods):
            self.remove(key)
        with _locked():
            _reclaim(self.index)


def _reclaim(index: int) -> None:
    """Delete what an index's (dead or finishing) owner left: namespaces, bridge, owner file."""
    prefix = f"sl{index}-p"
    listing = _ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            _ip("netns", "del", name, check=False)
    _ip("link", "del", f"slbr{index}", check=False)
    (RUN_DIR / f"{index}.owner").unlink(missing_ok=True)


def _listening_socket(host: str, port: int, netns: Path | None) -> socket.socket:
    """A listening TCP socket, created inside ``netns`` when given (in a thread of its own)."""
    if netns is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return sock
    result: list[socket.socket | BaseException] = []

    def in_namespace() -> None:
        # setns changes only this thread's namespace; the thread ends right after, the socket stays.
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            fd = os.open(netns, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
            finally:
                os.close(fd)
            result.append(_listening_socket(host, port, None))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=in_namespace, name="netns-listen")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


class Forwarder:
    """TCP forwarding on an event loop in a daemon thread; listeners are added and removed by id."""

    def __init__(self) -> None:
        """Start the thread and its loop."""
        self._loop = asyncio.new_event_loop()
        self._servers: dict[int, asyncio.Server] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self._ids = 0
        self._thread = threading.Thread(target=self._loop.run_forever, name="pod-forwarder", daemon=True)
        self._thread.start()

    def listen(self, listen: tuple[str, int], target: tuple[str, int], *, netns: Path | None = None) -> int:
        """Forward connections to ``listen`` (inside ``netns`` when given) to ``target`` on the host."""
        sock = _listening_socket(*listen, netns)

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(lambda r, w: self._handle(r, w, target), sock=sock)

        try:
            server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=10)
        except BaseException:
            sock.close()
            raise
        self._ids += 1
        self._servers[self._ids] = server
        return self._ids

    def close_listener(self, listener: int) -> None:
        """Stop accepting on a listener (open connections end when either side closes)."""
        server = self._servers.pop(listener, None)
        if server is not None:
            self._loop.call_soon_threadsafe(server.close)

    def close(self) -> None:
        """Close every listener and connection and stop the thread."""
        if self._loop.is_closed():
            return

        async def shutdown() -> None:
            for server in self._servers.values():
                server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            for server in self._servers.values():
                await server.wait_closed()

        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._servers.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._forward(reader, writer, target)
        finally:
            if task is not None:
                self._connections.discard(task)

    @staticmethod
    async def _forward(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
