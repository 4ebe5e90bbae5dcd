"""The process kubelet: real pods' containers run as local processes with what a kubelet gives them.

Pods come from the real controllers of the shared control plane (Deployment, StatefulSet, DaemonSet,
Job). The containers run small Python scripts that report what they see: their environment, their
identity at the API server (with the mounted service-account token, through the ``kubernetes``
Service address), their files and their network.
"""

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from stashlet.localcluster.controlplane import ControlPlane, wait_for_default_service_account
from stashlet.localcluster.kubelet import (
    ContainerConfigError,
    InitContainerError,
    ProcessKubelet,
    RunningContainer,
)
from stashlet.localcluster.podspec import NodeResources, expand, resource_value

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

IMAGE = "example.invalid/not-pulled:1"
CHECKOUT = Path(__file__).resolve().parents[2]
IDENTITY_SCRIPT = r"""
import json, os, signal, socket, ssl, time, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
base = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"

def api(method, path, body=None):
    data = json.dumps(body).encode() if body else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None

namespace = open(f"{sa}/namespace").read()
review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
_, review = api("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
print(json.dumps({
    "env": dict(os.environ),
    "user": review["status"]["userInfo"]["username"],
    "hostname": socket.gethostname(),
    "namespace": namespace,
}), flush=True)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
last = None
while not stopping:
    code, _ = api("GET", f"/api/v1/namespaces/{namespace}/secrets")
    if code != last:
        print(json.dumps({"list_secrets": code}), flush=True)
        last = code
    time.sleep(0.2)
print("SIGTERM received, shutting down", flush=True)
"""
FILES_SCRIPT = r"""
import json, os, pathlib
out = {
    "mode": open("/store/config/conf/mode.txt").read(),
    "config_entries": sorted(os.listdir("/store/config")),
    "password": open("/store/creds/password").read(),
    "password_mode": oct(os.stat("/store/creds/password").st_mode & 0o777),
    "labels": open("/store/info/labels").read(),
    "name": open("/store/info/name").read(),
}
visits = pathlib.Path("/store/data/visits.txt")
out["previous"] = visits.read_text() if visits.exists() else ""
with visits.open("a") as handle:
    handle.write(os.environ["HOSTNAME"] + "\n")
for path in ("/store/data-ro/attempt", "/store/config/attempt"):
    try:
        open(path, "w").close()
        out[path] = "written"
    except OSError as error:
        out[path] = error.strerror
open("/store/scratch/file", "w").write("scratch")
out["scratch"] = os.listdir("/store/scratch")
print(json.dumps(out), flush=True)
"""
SERVER_SCRIPT = r"""
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ['HOSTNAME']} {os.environ['POD_IP']}".encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""
SLEEP_SCRIPT = (
    "import os, time; print(os.environ.get('NODE_NAME'), os.environ['HOSTNAME'], flush=True); time.sleep(300)"
)


def python(script: str) -> list[str]:
    return ["python3", "-c", script]


def deployment(
    name: str, pod_spec: dict[str, Any], *, replicas: int = 1, **template_meta: Any
) -> dict[str, Any]:
    labels = {"app": name, **template_meta.pop("labels", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels, **template_meta}, "spec": pod_spec},
        },
    }


def container(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": command, **extra}


def field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def apply(kubectl: Kubectl, namespace: str, *objects: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input_obj=list(objects))


def get(kubectl: Kubectl, namespace: str, *what: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kubectl("get", "-n", namespace, *what, "-o", "json").stdout)
    return result


async def eventually(check: Callable[[], Any], what: str, within: float = 20) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)


def json_lines(handle: RunningContainer) -> list[Any]:
    return [json.loads(line) for line in handle.logs().splitlines() if line.startswith("{")]


def host_has(path: str) -> bool:
    return os.path.exists(path)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        body: bytes = response.read()
        return body.decode()


@pytest.fixture(scope="module")
async def kubelet(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProcessKubelet]:
    """One process kubelet for this module's tests, on the shared control plane."""
    async with ProcessKubelet(control_plane, tmp_path_factory.mktemp("kubelet")) as running:
        yield running


@pytest.fixture
def ready_namespace(control_plane: ControlPlane, namespace: str) -> str:
    """The test's namespace once its default service account exists (bare pods need it)."""
    wait_for_default_service_account(control_plane, namespace)
    return namespace


def test_expansion_and_resources_follow_kubernetes() -> None:
    """$(VAR) expansion keeps unknown and escaped references like the kubelet; resource values round up."""
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING) $$(A) $$$(A) $(A", env) == "$(MISSING) $(A) $1 $(A"
    assert expand("cost: $5 $", env) == "cost: $5 $"
    node = NodeResources(cpu="4", memory="1Gi")
    limits = {"resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}
    assert resource_value(limits, "limits.cpu", "1m", node) == "250"
    assert resource_value(limits, "limits.cpu", None, node) == "1"
    assert resource_value(limits, "limits.memory", "1Mi", node) == "64"
    assert resource_value({}, "limits.memory", "1Mi", node) == "1024"
    assert resource_value({}, "requests.cpu", None, node) == "0"


@pytest.mark.cluster
async def test_a_deployment_pod_runs_with_its_env_and_its_own_identity(
    kubelet: ProcessKubelet, kubectl: Kubectl, namespace: str
) -> None:
    """A Deployment's pod gets downward-API, Secret and ConfigMap env, and talks to the API server with
    its own service-account token: RBAC forbids listing Secrets until a Role grants it; SIGTERM reaches
    the process, which shuts down cleanly; the Deployment sees a ready replica."""
    env = [
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_UID", "metadata.uid"),
        field_env("NODE_NAME", "spec.nodeName"),
        field_env("SA_NAME", "spec.serviceAccountName"),
        field_env("POD_IP", "status.podIP"),
        field_env("HOST_IP", "status.hostIP"),
        field_env("APP_LABEL", "metadata.labels['app']"),
        field_env("NOTE", "metadata.annotations['note']"),
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {
            "name": "OPTIONAL",
            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "absent", "optional": True}},
        },
        {"name": "GREETING", "value": "$(MODE)-$(POD_NAME)-$$(MODE)-$(UNKNOWN)"},
        {
            "name": "CPU_MILLIS",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
        },
        {
            "name": "MEMORY_MI",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        },
    ]
    main = container(
        "main",
        python(IDENTITY_SCRIPT),
        env=env,
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        resources={"limits": {"cpu": "250m", "memory": "64Mi"}},
    )
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "s3cr3t"},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}},
        deployment("whoami", {"containers": [main]}, annotations={"note": "hello"}),
    )
    [pod] = await kubelet.wait_for_pods(namespace, "app=whoami")
    name = pod["metadata"]["name"]
    handle = await kubelet.run_container(namespace, name, "main")
    first = (await eventually(lambda: json_lines(handle), "the pod's report"))[0]
    seen = first["env"]

    assert first["user"] == f"system:serviceaccount:{namespace}:default"
    assert first["hostname"] == name
    assert first["namespace"] == namespace
    assert seen["POD_NAME"] == name == seen["HOSTNAME"]
    assert seen["POD_NAMESPACE"] == namespace
    assert seen["POD_UID"] == pod["metadata"]["uid"]
    assert seen["NODE_NAME"] == kubelet.node_name
    assert seen["SA_NAME"] == "default"
    assert seen["POD_IP"] == kubelet.pod_ip(namespace, name)
    assert seen["HOST_IP"] == kubelet.host_ip
    assert seen["APP_LABEL"] == "whoami"
    assert seen["NOTE"] == "hello"
    assert seen["PASSWORD"] == "s3cr3t"
    assert seen["MODE"] == "fast" == seen["CFG_mode"]
    assert "OPTIONAL" not in seen
    assert seen["GREETING"] == f"fast-{name}-$(MODE)-$(UNKNOWN)"
    assert (seen["CPU_MILLIS"], seen["MEMORY_MI"]) == ("250", "64")
    assert seen["KUBERNETES_SERVICE_HOST"] == "10.0.0.1"
    assert "KUBECONFIG" not in seen
    assert not any(key.startswith("PYTEST") for key in seen)

    await eventually(lambda: {"list_secrets": 403} in json_lines(handle), "listing secrets is forbidden")
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "read-secrets"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "read-secrets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    )
    await eventually(
        lambda: {"list_secrets": 200} in json_lines(handle), "the Role lets the pod list secrets"
    )

    status = get(kubectl, namespace, "pod", name)["status"]
    assert status["phase"] == "Running"
    assert status["podIP"] == seen["POD_IP"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    await eventually(
        lambda: get(kubectl, namespace, "deployment", "whoami")["status"].get("readyReplicas") == 1,
        "the Deployment counts the pod ready",
    )

    assert await handle.terminate(grace=10) == 0
    assert "SIGTERM received, shutting down" in handle.logs()


@pytest.mark.cluster
async def test_volumes_are_mounted_and_a_claim_outlives_its_pod(
    kubelet: ProcessKubelet, kubectl: Kubectl, namespace: str
) -> None:
    """ConfigMap (items), Secret (defaultMode), downward API and emptyDir volumes appear as files;
    read-only mounts refuse writes; a PVC's data written by one pod is seen by its replacement and on
    the host, while nothing is mounted on the host itself."""
    mounts = [
        {"name": "data", "mountPath": "/store/data"},
        {"name": "data", "mountPath": "/store/data-ro", "subPath": "sub", "readOnly": True},
        {"name": "config", "mountPath": "/store/config"},
        {"name": "creds", "mountPath": "/store/creds"},
        {"name": "info", "mountPath": "/store/info"},
        {"name": "scratch", "mountPath": "/store/scratch"},
    ]
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {
            "name": "config",
            "configMap": {"name": "settings", "items": [{"key": "mode", "path": "conf/mode.txt"}]},
        },
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {
            "name": "info",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                ]
            },
        },
        {"name": "scratch", "emptyDir": {}},
    ]
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    apply(
        kubectl,
        namespace,
        pvc,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "pw"},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "slow"}},
        deployment(
            "store",
            {
                "containers": [container("main", python(FILES_SCRIPT), volumeMounts=mounts)],
                "volumes": volumes,
            },
            labels={"tier": "storage"},
        ),
    )
    [first_pod] = await kubelet.wait_for_pods(namespace, "app=store")
    first_name = first_pod["metadata"]["name"]
    first = await kubelet.run_container(namespace, first_name, "main")
    assert await first.wait(15) == 0, first.logs()
    [report] = json_lines(first)
    assert report["mode"] == "slow"
    assert {"..data", "conf"} <= set(report["config_entries"])
    assert (report["password"], report["password_mode"]) == ("pw", "0o400")
    assert 'app="store"\n' in report["labels"]
    assert 'tier="storage"\n' in report["labels"]
    assert report["name"] == first_name
    assert report["previous"] == ""
    assert report["/store/data-ro/attempt"] == "Read-only file system"
    assert report["/store/config/attempt"] == "Read-only file system"
    assert report["scratch"] == ["file"]
    claim = kubelet.pvc_path(namespace, "data")
    assert (claim / "visits.txt").read_text() == f"{first_name}\n"
    assert (claim / "sub").is_dir()
    assert not host_has("/store/data/visits.txt"), "mounts stay in the pod's mount namespace"

    kubectl("delete", "pod", "-n", namespace, first_name, "--wait=false")
    [second_pod] = await kubelet.wait_for_pods(namespace, "app=store")
    second_name = second_pod["metadata"]["name"]
    assert second_name != first_name
    second = await kubelet.run_container(namespace, second_name, "main")
    assert await second.wait(15) == 0, second.logs()
    assert json_lines(second)[0]["previous"] == f"{first_name}\n"
    assert (claim / "visits.txt").read_text() == f"{first_name}\n{second_name}\n"
    await eventually(
        lambda: kubectl("get", "pod", "-n", namespace, first_name, check=False).returncode != 0,
        "the kubelet finishes the deleted pod's deletion",
    )


@pytest.mark.cluster
async def test_a_volume_over_the_checkout_does_not_hide_the_kubelets_own_software(
    kubelet: ProcessKubelet, kubectl: Kubectl, namespace: str
) -> None:
    """An emptyDir mounted on a folder that holds this checkout (as the chart's emptyDir on /tmp does
    when the checkout is under /tmp) hides the host's files there, but the venv, the package's source
    roots and PATH stay visible: the container still runs this venv's Python and imports stashlet."""
    checkout = CHECKOUT
    shadowed = str(checkout.parent)
    script = (
        "import json, os, sys, stashlet.localcluster.tools as lc; "
        "print(json.dumps({'prefix': sys.prefix, 'module': lc.__file__, "
        f"'entries': os.listdir({shadowed!r})}}))"
    )
    apply(
        kubectl,
        namespace,
        deployment(
            "shadow",
            {
                "containers": [
                    container(
                        "main",
                        [sys.executable, "-c", script],
                        volumeMounts=[{"name": "scratch", "mountPath": shadowed}],
                    )
                ],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
            },
        ),
    )
    [pod] = await kubelet.wait_for_pods(namespace, "app=shadow")
    handle = await kubelet.run_container(namespace, pod["metadata"]["name"], "main")
    assert await handle.wait(15) == 0, handle.logs()
    [report] = json_lines(handle)
    assert report["prefix"] == sys.prefix
    assert report["module"].startswith(str(checkout))
    assert set(report["entries"]) == {checkout.name}, "only the kept checkout shows through the emptyDir"


@pytest.mark.cluster
async def test_refreshed_secret_volume_reaches_the_running_container(
    kubelet: ProcessKubelet, kubectl: Kubectl, namespace: str
) -> None:
    """After a Secret changes, refresh_volumes swaps the files of its volume under the running
    container at once (rotated credentials without a restart), as the kubelet's sync does."""
    watcher = (
        "import time\nlast = None\nwhile True:\n"
        "    now = open('/store/rotating/password').read()\n"
        "    if now != last:\n        print(now, flush=True)\n        last = now\n"
        "    time.sleep(0.1)\n"
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"password": "old"},
    }
    spec = {
        "containers": [
            container(
                "main", python(watcher), volumeMounts=[{"name": "creds", "mountPath": "/store/rotating"}]
            )
        ],
        "volumes": [{"name": "creds", "secret": {"secretName": "creds"}}],
    }
    apply(kubectl, namespace, secret, deployment("rotate", spec))
    [pod] = await kubelet.wait_for_pods(namespace, "app=rotate")
    handle = await kubelet.run_container(namespace, pod["metadata"]["name"], "main")
    await eventually(lambda: handle.logs().split() == ["old"], "the container reads the first password")
    apply(kubectl, namespace, {**secret, "stringData": {"password": "new"}})
    await kubelet.refresh_volumes(namespace, pod["metadata"]["name"])
    await eventually(lambda: handle.logs().split() == ["old", "new"], "the container reads the rotated one")
    assert handle.returncode is None


@pytest.mark.cluster
async def test_replicas_listen_on_the_same_port_in_their_own_network(
    kubelet: ProcessKubelet, kubectl: Kubectl, namespace: str
) -> None:
    """Two replicas both listen on 0.0.0.0:8080, each in its own network namespace, and each answers on
    its own pod IP; the Deployment sees two ready replicas."""
    server = container("web", python(SERVER_SCRIPT), env=[field_env("POD_IP", "status.podIP")])
    apply(kubectl, namespace, deployment("web", {"containers": [server]}, replicas=2))
    pods = await kubelet.wait_for_pods(namespace, "app=web", 2)
    names = [pod["metadata"]["name"] for pod in pods]
    for name in names:
        await kubelet.run_pod(namespace, name)
    answers = {}
    for name in names:
        url = f"http://{kubelet.pod_ip(namespace, name)}:8080/"

        async def answer(url: str = url) -> str | None:
            try:
                return await asyncio.to_thread(http_get, url)
            except OSError:
                return None

        answers[name] = await eventually(answer, f"{name} answers on {url}")
    assert answers == {name: f"{name} {kubelet.pod_ip(namespace, name)}" for name in names}
    assert len({kubelet.pod_ip(namespace, name) for name in names}) == 2
    await eventually(
        lambda: get(kubectl, namespace, "deployment", "web")["status"].get("readyReplicas") == 2,
        "the Deployment counts two ready replicas",
    )


@pytest.mark.cluster
async def test_a_missing_secret_key_is_a_named_config_error(
    kubelet: ProcessKubelet, kubectl: Kubectl, ready_namespace: str
) -> None:
    """A secretKeyRef to a key the Secret lacks fails like CreateContainerConfigError: the error names
    the pod, container, variable, Secret and key, and the pod's status shows the waiting reason."""
    namespace = ready_namespace
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope"}}}]
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "pw"},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "broken"},
            "spec": {"containers": [container("main", python("print('never')"), env=env)]},
        },
    )
    with pytest.raises(ContainerConfigError) as raised:
        await kubelet.run_container(namespace, "broken", "main")
    assert str(raised.value) == (
        f'pod {namespace}/broken container "main" env "PASSWORD": '
        f'couldn\'t find key "nope" in Secret {namespace}/creds'
    )
    [status] = get(kubectl, namespace, "pod", "broken")["status"]["containerStatuses"]
    assert status["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert "nope" in status["state"]["waiting"]["message"]


@pytest.mark.cluster
async def test_init_containers_stop_at_the_first_failure(
    kubelet: ProcessKubelet, kubectl: Kubectl, ready_namespace: str
) -> None:
    """Init containers run in order to completion; the first non-zero exit stops the rest, the app
    container never starts, and initContainerStatuses report the exit codes."""
    namespace = ready_namespace
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "restore"},
        "spec": {
            "initContainers": [
                container("fetch", python("print('fetched')")),
                container("verify", python("import sys; print('corrupt'); sys.exit(7)")),
                container("never", python("print('unreachable')")),
            ],
            "containers": [container("app", python("print('app')"))],
        },
    }
    apply(kubectl, namespace, pod)
    with pytest.raises(InitContainerError) as raised:
        await kubelet.run_pod(namespace, "restore")
    assert raised.value.exit_codes == {"fetch": 0, "verify": 7}
    assert set(kubelet.containers(namespace, "restore")) == {"fetch", "verify"}
    assert "corrupt" in kubelet.containers(namespace, "restore")["verify"].logs()
    status = get(kubectl, namespace, "pod", "restore")["status"]
    init = {s["name"]: s["state"] for s in status["initContainerStatuses"]}
    assert init["fetch"]["terminated"]["exitCode"] == 0
    assert init["verify"]["terminated"]["exitCode"] == 7
    assert init["never"]["waiting"]["reason"] == "PodInitializing"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert status["phase"] == "Pending"


@pytest.mark.cluster
async def test_job_pods_run_to_completion_and_the_job_controller_sees_it(
    kubelet: ProcessKubelet, kubectl: Kubectl, namespace: str
) -> None:
    """A Job's pod run to completion is reported Succeeded or Failed with its exit code, and the Job
    controller marks the Job Complete, or Failed when the pod failed."""

    def job(name: str, code: int) -> dict[str, Any]:
        script = f"import sys; print('job {name}'); sys.exit({code})"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [container("main", python(script))]}
                },
            },
        }

    def condition(name: str) -> set[str]:
        conditions = get(kubectl, namespace, "job", name)["status"].get("conditions", [])
        return {c["type"] for c in conditions if c["status"] == "True"}

    apply(kubectl, namespace, job("good", 0), job("bad", 3))
    good = await kubelet.run_job(namespace, "good", timeout=30)
    bad = await kubelet.run_job(namespace, "bad", timeout=30)
    assert (good.phase, good.exit_codes) == ("Succeeded", {"main": 0})
    assert (bad.phase, bad.exit_codes) == ("Failed", {"main": 3})
    [pod] = get(kubectl, namespace, "pod", "-l", "batch.kubernetes.io/job-name=bad")["items"]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    await eventually(lambda: "Complete" in condition("good"), "Job good is Complete")
    await eventually(lambda: "Failed" in condition("bad"), "Job bad is Failed")


@pytest.mark.cluster
async def test_statefulsets_progress_and_daemonsets_get_a_pod_per_node(
    kubelet: ProcessKubelet, kubectl: Kubectl, namespace: str
) -> None:
    """A StatefulSet makes pod 1 only once pod 0 runs ready; a DaemonSet makes one pod per registered
    node, each bound to its node and told so through the downward API."""
    sleeper = container("main", python(SLEEP_SCRIPT), env=[field_env("NODE_NAME", "spec.nodeName")])
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [sleeper]}},
        },
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [sleeper]}},
        },
    }
    await kubelet.register_node("stashlet-node-b")
    apply(kubectl, namespace, statefulset, daemonset)
    [db0] = await kubelet.wait_for_pods(namespace, "app=db")
    assert db0["metadata"]["name"] == "db-0"
    await kubelet.run_pod(namespace, "db-0")
    [_, db1] = await kubelet.wait_for_pods(namespace, "app=db", 2)
    assert db1["metadata"]["name"] == "db-1"

    agents = await kubelet.wait_for_pods(namespace, "app=agent", 2)
    nodes = set()
    for pod in agents:
        handle = (await kubelet.run_pod(namespace, pod["metadata"]["name"]))["main"]

        def first_line(handle: RunningContainer = handle) -> str:
            return handle.logs().strip()

        line = await eventually(first_line, "the agent pod's line")
        node, hostname = line.split()
        assert hostname == pod["metadata"]["name"]
        nodes.add(node)
    assert nodes == {kubelet.node_name, "stashlet-node-b"}


@pytest.mark.cluster
async def test_close_tears_everything_down(
    control_plane: ControlPlane, kubectl: Kubectl, ready_namespace: str, tmp_path: Path
) -> None:
    """A pod reaches a server on the host's loopback through expose_loopback_port; close() stops its
    process and removes the namespaces, veths, bridge, node and pods it made."""
    namespace = ready_namespace

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello from the host")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        kubelet = await ProcessKubelet(control_plane, tmp_path / "state", node_name="teardown").start()
        try:
            host = kubelet.expose_loopback_port(port)
            script = (
                "import urllib.request, time; "
                f"print(urllib.request.urlopen('http://{host}:{port}/').read().decode(), flush=True); "
                "time.sleep(300)"
            )
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "client"},
                "spec": {"containers": [container("main", python(script))]},
            }
            apply(kubectl, namespace, pod)
            handle = await kubelet.run_container(namespace, "client", "main")
            await eventually(lambda: "hello from the host" in handle.logs(), "the pod reaches the host")
            netns_prefix = f"sl{kubelet.network.index}-p"
            bridge = kubelet.network.bridge
        finally:
            await kubelet.close()
    finally:
        server.shutdown()
        server.server_close()
    assert handle.returncode is not None
    assert netns_prefix not in ip("netns", "list")
    assert f" {bridge}:" not in ip("-o", "link")
    assert kubectl("get", "node", "teardown", check=False).returncode != 0
    assert kubectl("get", "pod", "-n", namespace, "client", check=False).returncode != 0
