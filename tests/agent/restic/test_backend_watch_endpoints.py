"""Where each store's repository is on the network (what the watch's probe connects to), and the probe
itself against real sockets on loopback: one that listens, a closed port, and one that never answers (a
listener whose accept queue is full drops the SYN, as a firewall would).

The watch with a probe over a real, silent operation: an endpoint that refuses is given up after the
bound with BackendUnavailable naming the backend; one that never answers too; a listening one is never
flagged; never more than one probe is in flight.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stashlet.agent.restic.backend import build_repository
from stashlet.agent.restic.backend_watch import BackendState, BackendWatch
from stashlet.agent.restic.endpoint import Endpoint, Probe, connect_error, endpoint_for, probe_for
from stashlet.agent.restic.errors import BackendUnavailable

SECRET = "s3cr3t-value-4711"


def repo_endpoint(
    backend: dict[str, Any], secret: dict[str, bytes], env: dict[str, str] | None = None
) -> Endpoint | None:
    repository = build_repository(
        {**backend, "storageSecretName": "s"}, {"RESTIC_PASSWORD": b"pw", **secret}, files_dir="/tmp/f"
    )
    return endpoint_for(repository.url, {**(env or {}), **repository.env})


AWS = {"AWS_ACCESS_KEY_ID": b"AKIA", "AWS_SECRET_ACCESS_KEY": SECRET.encode()}


@pytest.mark.parametrize(
    ("backend", "secret", "env", "expected"),
    [
        ({"s3": {"bucket": "b"}}, AWS, {}, Endpoint("s3.amazonaws.com", 443)),
        (
            {"s3": {"endpoint": "http://minio.storage:9000", "bucket": "b", "prefix": "p"}},
            AWS,
            {},
            Endpoint("minio.storage", 9000),
        ),
        ({"s3": {"endpoint": "http://10.0.0.7", "bucket": "b"}}, AWS, {}, Endpoint("10.0.0.7", 80)),
        (
            {"s3": {"endpoint": "s3.eu-west-1.wasabisys.com", "bucket": "b"}},
            AWS,
            {},
            Endpoint("s3.eu-west-1.wasabisys.com", 443),
        ),
        ({"s3": {"endpoint": "https://[fd00::5]:8443", "bucket": "b"}}, AWS, {}, Endpoint("fd00::5", 8443)),
        ({"gcs": {"bucket": "b", "prefix": "/p/"}}, {}, {}, Endpoint("storage.googleapis.com", 443)),
        (
            {"gcs": {"bucket": "b"}},
            {},
            {"STORAGE_EMULATOR_HOST": "http://10.244.0.1:4443"},
            Endpoint("10.244.0.1", 4443),
        ),
        (
            {"gcs": {"bucket": "b"}},
            {},
            {"STORAGE_EMULATOR_HOST": "gcs.local:8080"},
            Endpoint("gcs.local", 8080),
        ),
        (
            {"gcs": {"bucket": "b"}},
            {},
            {"STORAGE_EMULATOR_HOST": "https://gcs.local"},
            Endpoint("gcs.local", 443),
        ),
        (
            {"azure": {"container": "c"}},
            {"AZURE_ACCOUNT_NAME": b"acct", "AZURE_ACCOUNT_KEY": b"k"},
            {},
            Endpoint("acct.blob.core.windows.net", 443),
        ),
        (
            {"azure": {"container": "c", "storageAccount": "other"}},
            {"AZURE_ACCOUNT_KEY": b"k"},
            {"AZURE_ENDPOINT_SUFFIX": "core.chinacloudapi.cn"},
            Endpoint("other.blob.core.chinacloudapi.cn", 443),
        ),
        (
            {"azure": {"container": "c"}},
            {"AZURE_ACCOUNT_NAME": b"acct", "AZURE_ACCOUNT_KEY": b"k"},
            {"AZURE_ENDPOINT_SUFFIX": "azurite.test:10000"},
            Endpoint("acct.blob.azurite.test", 10000),
        ),
        ({"rest": {"url": "https://backup.example.org/repo"}}, {}, {}, Endpoint("backup.example.org", 443)),
        ({"rest": {"url": f"http://stash:{SECRET}@10.244.0.1:8000/r"}}, {}, {}, Endpoint("10.244.0.1", 8000)),
        (
            {"b2": {"bucket": "b"}},
            {"B2_ACCOUNT_ID": b"id", "B2_ACCOUNT_KEY": b"k"},
            {},
            Endpoint("api.backblazeb2.com", 443),
        ),
        (
            {"swift": {"container": "c"}},
            {"ST_AUTH": b"http://swift.local:8080/auth/v1.0", "ST_USER": b"u", "ST_KEY": b"k"},
            {},
            Endpoint("swift.local", 8080),
        ),
        (
            {"swift": {"container": "c"}},
            {"OS_AUTH_URL": b"https://keystone.local:5000/v3"},
            {},
            Endpoint("keystone.local", 5000),
        ),
        (
            {"swift": {"container": "c"}},
            {
                "OS_AUTH_URL": b"https://keystone.local/v3",
                "OS_STORAGE_URL": b"https://objects.local:8081/v1/AUTH_x",
                "OS_AUTH_TOKEN": b"t",
            },
            {},
            Endpoint("objects.local", 8081),
        ),
        ({"swift": {"container": "c"}}, {}, {}, None),
        ({"local": {"mountPath": "/safe/data", "subPath": "repo"}}, {}, {}, None),
    ],
)
def test_each_store_s_endpoint(
    backend: dict[str, Any], secret: dict[str, bytes], env: dict[str, str], expected: Endpoint | None
) -> None:
    """The host and port restic connects to, from the Repository, its Secret and the agent's env."""
    assert repo_endpoint(backend, secret, env) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, Endpoint("proxy.corp", 3128, via_proxy=True)),
        ({"https_proxy": "proxy.corp"}, Endpoint("proxy.corp", 80, via_proxy=True)),
        (
            {"HTTPS_PROXY": "https://proxy.corp", "https_proxy": "http://other:1"},
            Endpoint("proxy.corp", 443, via_proxy=True),
        ),
        ({"HTTPS_PROXY": "socks5://proxy.corp"}, Endpoint("proxy.corp", 1080, via_proxy=True)),
        ({"HTTP_PROXY": "http://proxy.corp:3128"}, Endpoint("minio.storage", 443)),  # https is not http
        ({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "*"}, Endpoint("minio.storage", 443)),
        ({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "storage"}, Endpoint("minio.storage", 443)),
        (
            {"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": "example.org, .storage"},
            Endpoint("minio.storage", 443),
        ),
        (
            {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "minio.storage:443"},
            Endpoint("minio.storage", 443),
        ),
        (
            {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "minio.storage:9000"},
            Endpoint("proxy.corp", 3128, via_proxy=True),
        ),
        (
            {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "torage"},
            Endpoint("proxy.corp", 3128, via_proxy=True),
        ),
    ],
)
def test_a_proxy_in_the_environment_is_what_is_probed(env: dict[str, str], expected: Endpoint) -> None:
    """restic's transport takes Go's proxy rules; where a proxy applies, it is what restic connects to."""
    backend = {"s3": {"endpoint": "https://minio.storage", "bucket": "b"}}
    assert repo_endpoint(backend, AWS, env) == expected


@pytest.mark.parametrize(
    ("host", "no_proxy", "proxied"),
    [("127.0.0.1", "", False), ("localhost", "", False), ("10.244.0.1", "10.244.0.0/24", False),
     ("10.244.0.1", "10.244.0.1", False), ("10.245.0.1", "10.244.0.0/24", True), ("10.244.0.1", "", True)],
)  # fmt: skip
def test_loopback_and_listed_addresses_are_never_proxied(host: str, no_proxy: str, proxied: bool) -> None:
    env = {"HTTP_PROXY": "http://proxy.corp:3128", "NO_PROXY": no_proxy}
    found = repo_endpoint({"rest": {"url": f"http://{host}:8000/r"}}, {}, env)
    assert found == (Endpoint("proxy.corp", 3128, via_proxy=True) if proxied else Endpoint(host, 8000))


def test_a_local_repository_has_no_probe() -> None:
    repository = build_repository(
        {"local": {"mountPath": "/safe/data"}, "storageSecretName": "s"},
        {"RESTIC_PASSWORD": b"pw"},
        files_dir="/f",
    )
    assert probe_for(repository, {}) is None


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on loopback that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port on loopback nobody listens on (the kernel refuses connections to it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unanswering() -> Iterator[int]:
    """A port on loopback whose listener's accept queue is full: a SYN there is dropped, never answered."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers: list[socket.socket] = []
        try:
            for _ in range(3):
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.3)
                try:
                    filler.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            else:
                pytest.fail("the accept queue never filled")
            yield port
        finally:
            for filler in fillers:
                filler.close()


async def test_the_probe_on_real_sockets(listening: int, closed_port: int, unanswering: int) -> None:
    """Go's wording for each way a connect fails; None for a port that accepts."""
    assert await connect_error(Endpoint("127.0.0.1", listening)) is None
    refused = await connect_error(Endpoint("127.0.0.1", closed_port))
    assert refused == f"probe: dial tcp 127.0.0.1:{closed_port}: connect: connection refused"
    began = time.monotonic()
    timed_out = await connect_error(Endpoint("127.0.0.1", unanswering), within=0.5)
    assert timed_out == f"probe: dial tcp 127.0.0.1:{unanswering}: i/o timeout (no answer within 0.5s)"
    assert time.monotonic() - began < 2
    proxy = await connect_error(Endpoint("127.0.0.1", closed_port, via_proxy=True))
    assert proxy == f"probe: dial tcp proxy 127.0.0.1:{closed_port}: connect: connection refused"
    unknown = await connect_error(Endpoint("no-such-host.invalid", 443))
    assert unknown == "probe: dial tcp: lookup no-such-host.invalid: no such host"


def rest_probe(port: int) -> tuple[str, Probe]:
    """A REST repository on loopback ``port`` (a password in its URL) and the probe the agent gives it."""
    url = f"http://stash:{SECRET}@127.0.0.1:{port}/repo"
    repository = build_repository(
        {"rest": {"url": url}, "storageSecretName": "s"}, {"RESTIC_PASSWORD": b"pw"}, files_dir="/f"
    )
    probe = probe_for(repository, {})
    assert probe is not None
    return repository.display_url, probe


async def test_a_refusing_endpoint_under_a_silent_operation_is_given_up(closed_port: int) -> None:
    """Nothing from restic, the endpoint refuses: reported unreachable once, given up after the bound with
    BackendUnavailable naming the backend (no password), the operation cancelled."""
    location, probe = rest_probe(closed_port)
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    watch = BackendWatch(location, 1.0, report, probe=probe, probe_every=0.2)
    cancelled = asyncio.Event()

    async def silent() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    began = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await watch.guard(silent)
    assert 1 <= time.monotonic() - began < 3
    assert cancelled.is_set()
    assert [r.reachable for r in reports] == [False]
    backend = f"backend rest:http://127.0.0.1:{closed_port}/repo"
    assert reports[0].message.startswith(f"{backend} unreachable since ")
    assert "connect: connection refused" in reports[0].message
    error = caught.value
    assert error.reason == "BackendUnavailable"
    assert error.message.startswith(f"{backend} unreachable since ")
    assert error.message.endswith("; gave up after 1s of retries (the bound is 1s)")
    assert (
        "restic retries silently, its endpoint: "
        f"dial tcp 127.0.0.1:{closed_port}: connect: connection refused;" in error.message
    )
    assert SECRET not in error.message and "stash:" not in error.message


async def test_a_listening_endpoint_is_never_flagged(listening: int) -> None:
    """A long silent operation against an endpoint that accepts: no report, the result returned."""
    location, probe = rest_probe(listening)
    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    probes = 0

    async def counted() -> str | None:
        nonlocal probes
        probes += 1
        return await probe()

    watch = BackendWatch(location, 0.3, report, probe=counted, probe_every=0.1)

    async def silent() -> str:
        await asyncio.sleep(1.2)
        return "done"

    assert await watch.guard(silent) == "done"
    assert reports == [] and watch.state is None
    assert 8 <= probes <= 13  # at the probe's cadence, not the watch's 1s poll


async def test_an_unanswering_endpoint_is_probed_once_at_a_time(unanswering: int) -> None:
    """Each probe waits for its timeout; no second one starts meanwhile, and the silence is given up."""
    endpoint = Endpoint("127.0.0.1", unanswering)
    in_flight = 0
    most = 0
    started = 0

    async def probe() -> str | None:
        nonlocal in_flight, most, started
        in_flight += 1
        started += 1
        most = max(most, in_flight)
        try:
            return await connect_error(endpoint, within=0.6)
        finally:
            in_flight -= 1

    reports: list[BackendState] = []

    async def report(state: BackendState) -> None:
        reports.append(state)

    watch = BackendWatch(
        f"rest:http://127.0.0.1:{unanswering}/repo", 1.0, report, probe=probe, probe_every=0.05
    )
    with pytest.raises(BackendUnavailable, match="i/o timeout"):
        await watch.guard(lambda: asyncio.sleep(60))
    assert most == 1
    assert 2 <= started <= 4  # one after another, each 0.6s: the first failure at 0.6s, given up at >= 1.6s
    assert in_flight == 0  # the last one cancelled with the operation
    assert [r.reachable for r in reports] == [False]
