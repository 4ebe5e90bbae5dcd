"""The Helm chart: lint, rendering, the values schema, pins, RBAC against rbac.py, and a real install.

The cluster tests render the chart, apply it to the local cluster (server-side dry run, then for real),
and its real node runs the operator's and the Pushgateway's pods from the images built here, exactly as
the chart's Deployments specify them (probes, the chart's ServiceAccount's own token), so the
ClusterRoles are what is tested.

helm is the pinned one (``tools.ensure("helm")``, built once from the Go module proxy at ``versions.HELM``),
its cache, config and data folders kept in a temporary folder so tests never touch ``~/.config/helm``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import kubeconfigs
from tests.chart.helm import CHART, Helm, Obj, find
from tests.polling import eventually

from stashlet.api import agent_identity, versions
from stashlet.api.backupconfiguration import BackupConfiguration
from stashlet.api.repository import Repository
from stashlet.api.restoresession import RestoreSession
from stashlet.localcluster import tools
from stashlet.localcluster.controlplane import ControlPlane
from stashlet.operator import cli, settings
from stashlet.operator.core.workloads import WORKLOAD_KINDS
from stashlet.operator.injection import job_rbac, rbac, restore_rbac
from stashlet.operator.injection.rbac import RepositoryAccess
from stashlet.operator.repository import wipe_job

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

CLUSTER_SCOPED = (
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


class AsyncKubectl:
    """The pinned kubectl as the admin, without blocking the event loop."""

    def __init__(self, plane: ControlPlane) -> None:
        self.argv = [str(tools.ensure("kubectl")), f"--kubeconfig={plane.kubeconfig}"]

    async def __call__(
        self, *args: str, input_text: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl (as the admin, or with ``kubeconfig``); returns the completed process."""
        argv = [self.argv[0], f"--kubeconfig={kubeconfig}"] if kubeconfig else self.argv
        process = await asyncio.create_subprocess_exec(
            *argv,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            process.communicate(input_text.encode() if input_text else None), 120
        )
        result = subprocess.CompletedProcess(
            argv + list(args), process.returncode or 0, out.decode(), err.decode()
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    async def get(self, resource: str, name: str, namespace: str | None = None) -> Obj | None:
        """One object as JSON, or None when it does not exist."""
        ns = ["-n", namespace] if namespace else []
        out = (await self("get", resource, name, *ns, "-o", "json", "--ignore-not-found")).stdout
        return json.loads(out) if out.strip() else None

    async def apply(self, objects: list[Obj], *extra: str) -> str:
        """Server-side apply of ``objects``; returns kubectl's report."""
        text = yaml.safe_dump_all(objects, sort_keys=False)
        return (await self("apply", "--server-side", "-f", "-", *extra, input_text=text)).stdout


@pytest.fixture(scope="session")
def akubectl(control_plane: ControlPlane) -> AsyncKubectl:
    """Async kubectl as the admin."""
    return AsyncKubectl(control_plane)


@pytest.fixture
def cluster_scoped_cleanup(control_plane: ControlPlane) -> Iterator[Callable[[str], None]]:
    """Register a release whose cluster-scoped objects (ClusterRoles, bindings) go after the test."""
    releases: list[str] = []
    yield releases.append
    for release in releases:
        control_plane.kubectl(
            "delete",
            "clusterroles,clusterrolebindings",
            "-l",
            f"app.kubernetes.io/instance={release}",
            "--wait=false",
            check=False,
        )


# Every value of values.yaml set to something other than its default (a test checks none is missing).
EVERY_VALUE: Obj = {
    "nameOverride": "backup",
    "fullnameOverride": "acme-backup",
    "watchNamespaces": ["team-a", "team-b"],
    "imagePullSecrets": [{"name": "regcred"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "infra", "operator": "Exists"}]}]
            }
        }
    },
    "priorityClassName": "system-cluster-critical",
    "operator": {
        "image": {"repository": "registry.example/stashlet/operator", "tag": "9.9.9", "pullPolicy": "Always"},
        "logLevel": "debug",
        "workers": 3,
        "resyncSeconds": 120.5,
        "pickupDeadlineSeconds": 90,
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "health": {"enabled": True, "port": 8081},
        "podAnnotations": {"example.com/note": "operator"},
        "podLabels": {"team": "platform"},
    },
    "serviceAccount": {"create": True, "name": "backup-operator", "annotations": {"example.com/sa": "yes"}},
    "rbac": {"create": True},
    "agent": {
        "image": {"repository": "registry.example/stashlet/agent", "tag": "9.9.8", "pullPolicy": "Never"},
        "logLevel": "warning",
        "statusPort": 50000,
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
    },
    "trigger": {"serviceAccountName": "backup-trigger"},
    "kubedump": {"enabled": False},
    "grafanaDashboard": {
        "enabled": True,
        "namespace": "monitoring",
        "labels": {"grafana_dashboard": "yes"},
        "annotations": {"grafana_folder": "Backups"},
    },
    # the Snapshot API's values reaching its manifests: tests/chart/test_snapshots_api.py
    "snapshotsApi": {
        "enabled": False,
        "replicas": 2,
        "port": 9443,
        "resticTimeoutSeconds": 30,
        "logLevel": "debug",
        "resources": {"requests": {"cpu": "5m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    },
    "pushgateway": {
        "enabled": True,
        "url": "http://metrics.example:9091",
        "image": {"repository": "registry.example/pushgateway", "tag": "v0.0.1", "pullPolicy": "Always"},
        "logLevel": "debug",
        "port": 9999,
        "service": {"type": "NodePort", "port": 80},
        "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "podLabels": {"tier": "metrics"},
    },
}


def leaf_paths(values: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the leaves of a values tree (an empty map or any list is a leaf)."""
    if isinstance(values, dict) and values:
        return {p for k, v in values.items() for p in leaf_paths(v, f"{prefix}{k}.")}
    return {prefix.rstrip(".")}


def container(deployment: Obj, name: str) -> Obj:
    """The container called ``name`` of a Deployment."""
    found: list[Obj] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, f"container {name}: {len(found)}"
    return found[0]


def operator_argv(objects: list[Obj], name: str = "stashlet-operator") -> list[str]:
    """The operator container's command + args, as the kubelet would run them."""
    c = container(find(objects, "Deployment", name), "operator")
    return [*c["command"], *c["args"]]


def rule_triples(rules: list[Obj]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every rule, resourceNames ignored."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# ---------------------------------------------------------------------------------------- no cluster


def test_helm_lint_strict_passes(helm: Helm) -> None:
    """`helm lint --strict` (warnings are errors) passes on the chart with its default values."""
    result = helm.run("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


def test_helm_lint_strict_passes_with_every_value_set(helm: Helm, tmp_path: Path) -> None:
    """`helm lint --strict` also passes with a values file that sets every value."""
    path = tmp_path / "every.yaml"
    path.write_text(yaml.safe_dump(EVERY_VALUE))
    result = helm.run("lint", "--strict", str(CHART), "--values", str(path))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_default_render_is_the_operator_pushgateway_and_least_privilege_rbac(helm: Helm) -> None:
    """With default values the chart renders the operator's ServiceAccount, its ClusterRoles and bindings,
    the kubedump ClusterRole, the operator Deployment and the Pushgateway Deployment + Service; the
    operator runs `stashlet-operator run` with the agent and operator images at the appVersion, pushing to
    the chart's own Pushgateway Service, watching every namespace; `--include-crds` adds exactly the
    committed CRDs from charts/stashlet/crds.
    """
    objects = helm.render(release="stashlet", namespace="backup-system")
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ClusterRole", "stashlet-kubedump"),
        ("ClusterRole", "stashlet-operator"),
        ("ClusterRole", "stashlet-operator-grants"),
        ("ClusterRoleBinding", "stashlet-operator"),
        ("ClusterRoleBinding", "stashlet-operator-grants"),
        ("Deployment", "stashlet-operator"),
        ("Deployment", "stashlet-pushgateway"),
        ("Service", "stashlet-pushgateway"),
        ("ServiceAccount", "stashlet-operator"),
        ("ValidatingAdmissionPolicy", "stashlet-operator-agent-sessions"),
        ("ValidatingAdmissionPolicy", "stashlet-operator-token-secrets"),
        ("ValidatingAdmissionPolicyBinding", "stashlet-operator-agent-sessions"),
        ("ValidatingAdmissionPolicyBinding", "stashlet-operator-token-secrets"),
    ]
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == "backup-system", obj["metadata"]
    assert operator_argv(objects) == [
        "stashlet-operator",
        "run",
        f"--agent-image={settings.DEFAULT_AGENT_IMAGE}",
        f"--operator-image={settings.DEFAULT_OPERATOR_IMAGE}",
        "--image-pull-policy=IfNotPresent",
        "--pushgateway-url=http://stashlet-pushgateway.backup-system.svc:9091",
        "--status-port=56789",
        "--agent-log-level=info",
        f"--trigger-service-account={settings.DEFAULT_TRIGGER_SERVICE_ACCOUNT}",
        "--workers=16",
        "--resync-seconds=600",
        "--pickup-deadline-seconds=300",
        "--log-level=info",
        "--health-port=8080",
    ]
    deployment = find(objects, "Deployment", "stashlet-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "stashlet-operator"
    for binding in ("stashlet-operator", "stashlet-operator-grants"):
        crb = find(objects, "ClusterRoleBinding", binding)
        assert crb["roleRef"]["name"] == binding
        assert crb["subjects"] == [
            {"kind": "ServiceAccount", "name": "stashlet-operator", "namespace": "backup-system"}
        ]
    service = find(objects, "Service", "stashlet-pushgateway")
    pushgateway = find(objects, "Deployment", "stashlet-pushgateway")
    assert service["spec"]["selector"] == pushgateway["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9091, "targetPort": "http", "protocol": "TCP"}
    ]

    with_crds = helm.render("--include-crds", release="stashlet", namespace="backup-system")
    crds = {o["metadata"]["name"]: o for o in with_crds if o["kind"] == "CustomResourceDefinition"}
    committed = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        committed[crd["metadata"]["name"]] = crd
    assert len(committed) == 5
    assert crds == committed


def test_every_pod_runs_non_root_read_only_without_capabilities_and_with_resources(helm: Helm) -> None:
    """Both pods run as non-root users under seccomp RuntimeDefault; every container has a read-only root
    filesystem, no privilege escalation, all capabilities dropped and a memory limit; the Pushgateway
    has liveness and readiness probes; the operator's /tmp is an emptyDir (its root is read-only)."""
    objects = helm.render()
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
            assert c["resources"]["limits"]["memory"], c["name"]
            assert c["resources"]["requests"]["cpu"], c["name"]
    pushgateway = container(find(objects, "Deployment", "stashlet-pushgateway"), "pushgateway")
    assert pushgateway["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert pushgateway["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    operator = find(objects, "Deployment", "stashlet-operator")
    assert container(operator, "operator")["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert operator["spec"]["template"]["spec"]["volumes"][0]["emptyDir"] == {"sizeLimit": "64Mi"}
    probed = container(operator, "operator")
    assert probed["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]
    assert probed["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert probed["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_values_file_with_every_value_reaches_the_manifests(helm: Helm, tmp_path: Path) -> None:
    """A values file setting every value (none of values.yaml is left out) renders, and each value lands
    where it should: names, labels, the operator's flags, images and pull policies, scheduling, pull
    secrets, resources, probes on the health port, pod metadata, the ServiceAccount, an external
    Pushgateway URL, the agent's resources (as STASHLET_AGENT_RESOURCES) and the Pushgateway's settings.
    """
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    exercised = leaf_paths(EVERY_VALUE)
    missing = {d for d in leaf_paths(defaults) if not any(p == d or p.startswith(f"{d}.") for p in exercised)}
    assert not missing, f"values not exercised by EVERY_VALUE: {sorted(missing)}"

    objects = helm.render(values=EVERY_VALUE, tmp=tmp_path, release="rel", namespace="ops")
    names = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert names == [
        ("ClusterRole", "acme-backup-operator"),
        ("ClusterRole", "acme-backup-operator-grants"),
        ("ClusterRoleBinding", "acme-backup-operator"),
        ("ClusterRoleBinding", "acme-backup-operator-grants"),
        ("ConfigMap", "acme-backup-dashboard"),
        ("Deployment", "acme-backup-operator"),
        ("Deployment", "acme-backup-pushgateway"),
        ("Service", "acme-backup-pushgateway"),
        ("ServiceAccount", "backup-operator"),
        ("ValidatingAdmissionPolicy", "acme-backup-operator-agent-sessions"),
        ("ValidatingAdmissionPolicy", "acme-backup-operator-token-secrets"),
        ("ValidatingAdmissionPolicyBinding", "acme-backup-operator-agent-sessions"),
        ("ValidatingAdmissionPolicyBinding", "acme-backup-operator-token-secrets"),
    ]
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "backup"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"

    operator = find(objects, "Deployment", "acme-backup-operator")
    c = container(operator, "operator")
    assert c["image"] == "registry.example/stashlet/operator:9.9.9"
    assert c["imagePullPolicy"] == "Always"
    assert c["args"] == [
        "run",
        "--namespaces=team-a,team-b",
        "--agent-image=registry.example/stashlet/agent:9.9.8",
        "--operator-image=registry.example/stashlet/operator:9.9.9",
        "--image-pull-policy=Never",
        "--pushgateway-url=http://metrics.example:9091",
        "--status-port=50000",
        "--agent-log-level=warning",
        "--trigger-service-account=backup-trigger",
        "--workers=3",
        "--resync-seconds=120.5",
        "--pickup-deadline-seconds=90",
        "--log-level=debug",
        "--health-port=8081",
    ]
    assert c["env"] == [
        {
            "name": "STASHLET_AGENT_RESOURCES",
            "value": json.dumps(EVERY_VALUE["agent"]["resources"], separators=(",", ":"), sort_keys=True),
        }
    ]
    assert c["resources"] == EVERY_VALUE["operator"]["resources"]
    assert c["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    pod = operator["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/note": "operator"}
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["spec"]["serviceAccountName"] == "backup-operator"

    pushgateway = find(objects, "Deployment", "acme-backup-pushgateway")
    p = container(pushgateway, "pushgateway")
    assert p["image"] == "registry.example/pushgateway:v0.0.1"
    assert p["imagePullPolicy"] == "Always"
    assert p["args"] == ["--web.listen-address=:9999", "--log.level=debug", "--log.format=json"]
    assert p["ports"][0]["containerPort"] == 9999
    assert p["resources"] == EVERY_VALUE["pushgateway"]["resources"]
    assert pushgateway["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert pushgateway["spec"]["template"]["metadata"]["labels"]["tier"] == "metrics"
    service = find(objects, "Service", "acme-backup-pushgateway")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["port"] == 80

    for deployment in (operator, pushgateway):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["nodeSelector"] == EVERY_VALUE["nodeSelector"]
        assert spec["tolerations"] == EVERY_VALUE["tolerations"]
        assert spec["affinity"] == EVERY_VALUE["affinity"]
        assert spec["priorityClassName"] == "system-cluster-critical"

    sa = find(objects, "ServiceAccount", "backup-operator")
    assert sa["metadata"]["annotations"] == {"example.com/sa": "yes"}
    grants = find(objects, "ClusterRole", "acme-backup-operator-grants")
    assert ("rbac.authorization.k8s.io", "clusterroles", "bind") not in rule_triples(grants["rules"])
    for crb in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "backup-operator", "namespace": "ops"}]


@pytest.mark.parametrize(
    ("override", "absent", "present"),
    [
        (["--set", "rbac.create=false"], set(CLUSTER_SCOPED), {"ServiceAccount"}),
        (["--set", "pushgateway.enabled=false"], {"Service"}, {"ClusterRole"}),
        (
            ["--set", "serviceAccount.create=false", "--set", "serviceAccount.name=existing"],
            {"ServiceAccount"},
            {"ClusterRoleBinding"},
        ),
    ],
    ids=["rbac-off", "pushgateway-off", "existing-service-account"],
)
def test_switches_leave_out_what_they_name(
    helm: Helm, override: list[str], absent: set[str], present: set[str]
) -> None:
    """rbac.create=false renders no ClusterRoles or bindings; pushgateway.enabled=false renders no
    Pushgateway and no --pushgateway-url (nothing to push to); serviceAccount.create=false renders no
    ServiceAccount and runs (and binds) the named one."""
    objects = helm.render(*override)
    kinds = {o["kind"] for o in objects}
    assert not kinds & absent
    assert present <= kinds
    argv = operator_argv(objects)
    if "pushgateway.enabled=false" in override:
        assert not [o for o in objects if "pushgateway" in o["metadata"]["name"]]
        assert not [a for a in argv if a.startswith("--pushgateway-url")]
    if "serviceAccount.name=existing" in override:
        deployment = find(objects, "Deployment", "stashlet-operator")
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing"
        for crb in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
            assert crb["subjects"][0]["name"] == "existing"
        policy = find(objects, "ValidatingAdmissionPolicy", "stashlet-operator-token-secrets")
        assert (
            "'system:serviceaccount:stashlet-system:existing'"
            in policy["spec"]["matchConditions"][0]["expression"]
        )


def test_admission_policies_tie_agent_accounts_to_their_configuration_and_the_operator_to_tokens(
    helm: Helm,
) -> None:
    """The sessions policy names exactly the account prefixes stashlet makes session writers with
    (stashlet.api.agent_identity), in its match and in its rule, for creating a session and writing its
    status, and denies; the Secrets policy matches the operator's own account (release namespace) and
    admits only an agent account's token Secret."""
    objects = helm.render(release="stashlet", namespace="backup-system")
    sessions = find(objects, "ValidatingAdmissionPolicy", "stashlet-operator-agent-sessions")["spec"]
    listed = "[" + ", ".join(f"'{p}'" for p in agent_identity.SESSION_WRITER_PREFIXES) + "]"
    assert listed in " ".join(sessions["matchConditions"][0]["expression"].split())
    assert listed in " ".join(sessions["validations"][0]["expression"].split())
    assert sessions["failurePolicy"] == "Fail"
    assert sessions["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["stash.appscode.com"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["backupsessions", "backupsessions/status"],
        }
    ]
    tokens = find(objects, "ValidatingAdmissionPolicy", "stashlet-operator-token-secrets")["spec"]
    assert tokens["matchConditions"][0]["expression"].split() == [
        "request.userInfo.username",
        "==",
        "'system:serviceaccount:backup-system:stashlet-operator'",
    ]
    rule = tokens["validations"][0]["expression"]
    assert f"'{rbac.SERVICE_ACCOUNT_TOKEN_TYPE}'" in rule
    assert f"startsWith('{agent_identity.AGENT_ACCOUNT_PREFIX}')" in rule
    assert f"startsWith('{agent_identity.RESTORE_ACCOUNT_PREFIX}')" in rule
    for name in ("stashlet-operator-agent-sessions", "stashlet-operator-token-secrets"):
        binding = find(objects, "ValidatingAdmissionPolicyBinding", name)["spec"]
        assert binding == {"policyName": name, "validationActions": ["Deny"]}


def test_existing_service_account_needs_a_name(helm: Helm) -> None:
    """serviceAccount.create=false without serviceAccount.name fails and says which value is required."""
    result = helm.template("--set", "serviceAccount.create=false", check=False)
    assert result.returncode != 0
    assert "serviceAccount.name is required" in result.stderr


@pytest.mark.parametrize(
    ("setting", "field", "complaint"),
    [
        ("operator.workers=many", "/operator/workers", "want integer"),
        ("agent.statusPort=http", "/agent/statusPort", "want integer"),
        ("watchNamespaces=team-a", "/watchNamespaces", "want array"),
        ("agent.logLevel=verbose", "/agent/logLevel", "value must be one of"),
        ("operator.image.pullPolicy=Sometimes", "/operator/image/pullPolicy", "value must be one of"),
        ("pushgateway.url=metrics:9091", "/pushgateway/url", "does not match pattern"),
        ("operator.replicas=2", "/operator", "additional properties 'replicas' not allowed"),
    ],
)
def test_schema_rejects_wrong_values_naming_the_field(
    helm: Helm, setting: str, field: str, complaint: str
) -> None:
    """values.schema.json makes `helm template` fail on a wrong type, a value outside an enum, a URL
    without a scheme or an unknown key, and the error names the field."""
    result = helm.template("--set", setting, check=False)
    assert result.returncode != 0, result.stdout[:500]
    assert f"at '{field}'" in result.stderr, result.stderr
    assert complaint in result.stderr, result.stderr


def test_pins_agree_with_the_project(helm: Helm) -> None:
    """The Pushgateway image tag is `versions.PUSHGATEWAY` (the binary the tests run; the image is
    tagged with the leading v, prom/pushgateway:v1.11.1), appVersion is pyproject's version, the chart is
    0.1.0, and the images the chart gives the operator by default are the operator's own defaults."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == project["version"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["pushgateway"]["image"] == {
        "repository": "prom/pushgateway",
        "tag": versions.PUSHGATEWAY,
        "pullPolicy": "IfNotPresent",
    }
    objects = helm.render()
    pushgateway = container(find(objects, "Deployment", "stashlet-pushgateway"), "pushgateway")
    assert pushgateway["image"] == f"prom/pushgateway:{versions.PUSHGATEWAY}"
    assert container(find(objects, "Deployment", "stashlet-operator"), "operator")["image"] == (
        settings.DEFAULT_OPERATOR_IMAGE
    )
    assert settings.DEFAULT_OPERATOR_IMAGE.endswith(f":{project['version']}")
    assert settings.DEFAULT_AGENT_IMAGE.endswith(f":{project['version']}")


def test_operator_accepts_the_rendered_command_line(
    helm: Helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's own parser accepts the args and env the chart renders (default values and every
    value) and turns them into the settings meant, the health port and the agents' default resources
    (STASHLET_AGENT_RESOURCES) included."""
    default = cli.settings_from(cli.parser().parse_args(operator_argv(helm.render())[1:]))
    assert default == settings.OperatorSettings(
        pushgateway_url="http://stashlet-pushgateway.stashlet-system.svc:9091"
    )
    assert cli.parser().parse_args(operator_argv(helm.render())[1:]).health_port == 8080
    every = helm.render(values=EVERY_VALUE, tmp=tmp_path)
    argv = operator_argv(every, name="acme-backup-operator")
    for variable in container(find(every, "Deployment", "acme-backup-operator"), "operator")["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    args = cli.parser().parse_args(argv[1:])
    assert cli.settings_from(args) == settings.OperatorSettings(
        namespaces=("team-a", "team-b"),
        agent_image="registry.example/stashlet/agent:9.9.8",
        operator_image="registry.example/stashlet/operator:9.9.9",
        image_pull_policy="Never",
        pushgateway_url="http://metrics.example:9091",
        status_port=50000,
        agent_log_level="warning",
        trigger_service_account="backup-trigger",
        workers=3,
        agent_resources=EVERY_VALUE["agent"]["resources"],
        pickup_deadline_seconds=90,
    )
    assert (args.log_level, args.resync_seconds, args.health_port) == ("debug", 120.5, 8081)


def test_grants_cluster_role_is_exactly_what_rbac_py_grants(helm: Helm) -> None:
    """The operator may only create Roles holding permissions it has itself: the chart's grants
    ClusterRole holds the union of every rule rbac.py, restore_rbac.py, job_rbac.py and wipe_job.py
    write (sidecar and stash-init for each workload kind, Repository in the same or another namespace,
    trigger, kubedump Jobs, a Repository's wipe Job), nothing more, plus `bind` on the kubedump ClusterRole
    alone. The operator's own ClusterRole has no wildcard and no escalate/bind/impersonate verb."""
    bc = BackupConfiguration.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "bc", "namespace": "app", "uid": "u"},
            "spec": {
                "repository": {"name": "repo"},
                "schedule": "*/5 * * * *",
                "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "w"}},
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                "hooks": {"preBackup": {"exec": {"command": ["sync"]}}},  # pods/exec is granted for it
            },
        }
    )
    granted: list[Obj] = []
    for kind in WORKLOAD_KINDS.values():
        for repo_ns in ("app", "elsewhere"):
            for obj in rbac.sidecar_rbac(bc, kind, "w", repository=RepositoryAccess(repo_ns, "r", "s")):
                granted += obj.get("rules", [])
    granted += [r for obj in rbac.trigger_rbac(bc, settings.OperatorSettings()) for r in obj.get("rules", [])]
    rs = RestoreSession.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "rs", "namespace": "app", "uid": "u"},
            "spec": {"repository": {"name": "repo"}, "target": {"ref": {"kind": "Deployment", "name": "w"}}},
        }
    )
    for kind in WORKLOAD_KINDS.values():
        for repo_ns in ("app", "elsewhere"):
            for obj in restore_rbac.restore_rbac(
                rs, kind, "w", repository=RepositoryAccess(repo_ns, "r", "s")
            ):
                granted += obj.get("rules", [])
    for repo_ns in ("app", "elsewhere"):
        for obj in job_rbac.job_rbac(bc, repository=RepositoryAccess(repo_ns, "r", "s")):
            granted += obj.get("rules", [])
    repository = Repository.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "r", "namespace": "app", "uid": "u"},
            "spec": {"backend": {"rest": {"url": "http://r"}, "storageSecretName": "s"}, "wipeOut": True},
        }
    )
    granted += [r for obj in wipe_job.wipe_rbac(repository) for r in obj.get("rules", [])]

    objects = helm.render()
    grants = find(objects, "ClusterRole", "stashlet-operator-grants")["rules"]
    bind = [r for r in grants if r["apiGroups"] == ["rbac.authorization.k8s.io"]]
    assert bind == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": ["stashlet-kubedump"],
        }
    ]
    rest = [r for r in grants if r not in bind]
    assert not [r for r in rest if "resourceNames" in r]
    assert rule_triples(rest) == rule_triples(granted)

    own = find(objects, "ClusterRole", "stashlet-operator")["rules"]
    triples = rule_triples(own)
    assert not [t for t in triples if "*" in t]
    assert not [t for t in triples if t[2] in ("escalate", "bind", "impersonate")]
    # Secrets: read (their key names), and create only what the token-secrets policy admits.
    assert {t[2] for t in triples if t[1] == "secrets"} == {"get", "list", "watch", "create"}
    assert find(objects, "ValidatingAdmissionPolicy", "stashlet-operator-token-secrets")

    kubedump = find(objects, "ClusterRole", "stashlet-kubedump")["rules"]
    assert kubedump == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]


# ------------------------------------------------------------------------------------------- cluster


def token_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a token of ServiceAccount ``namespace/account`` (TokenRequest)."""
    token = plane.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    return kubeconfigs.token_kubeconfig(plane, token, path, namespace)


@pytest.fixture
def app_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A second fresh namespace, for the workload the chart's operator backs up. Deleted afterwards; a
    configuration a failed test left behind loses its finalizer first (its operator is gone by then)."""
    name = f"app-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        left = control_plane.kubectl("get", "backupconfigurations", "-n", name, "-o", "name", check=False)
        for ref in left.stdout.split():
            patch = '{"metadata":{"finalizers":null}}'
            control_plane.kubectl("patch", ref, "-n", name, "--type=merge", "-p", patch, check=False)
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


async def apply_release(
    helm: Helm, akubectl: AsyncKubectl, release: str, namespace: str, *settings_: str
) -> list[Obj]:
    """Render the chart (CRDs included), apply it with a server-side dry run, check nothing was made,
    then apply it for real; returns the rendered objects."""
    objects = helm.render("--include-crds", *settings_, release=release, namespace=namespace)
    report = await akubectl.apply(objects, "--dry-run=server")
    assert report.count("serverside-applied (server dry run)") == len(objects), report
    assert await akubectl.get("clusterrole", f"{release}-operator") is None
    assert await akubectl.get("deployment", f"{release}-operator", namespace) is None
    report = await akubectl.apply(objects)
    assert report.count("serverside-applied") == len(objects), report
    return objects


def http_get(url: str) -> str:
    """GET ``url`` and return the body (raises on failure)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a pod's http URL
        body: bytes = response.read()
        return body.decode()


@pytest.mark.cluster
async def test_chart_installs_and_its_operator_reconciles_a_configuration_to_ready(
    helm: Helm,
    akubectl: AsyncKubectl,
    control_plane: ControlPlane,
    namespace: str,
    app_namespace: str,
    cluster_scoped_cleanup: Callable[[str], None],
    tmp_path: Path,
) -> None:
    """The rendered chart passes a server-side dry run (nothing made) and applies for real in a fresh
    namespace; the real node runs the operator's pod from the operator image as the chart's Deployment
    says (the chart's ServiceAccount's own token) and the Deployment becomes available through its
    probes; the Pushgateway pod (the pinned build as image prom/pushgateway) serves /-/ready, and the
    operator's /readyz and /healthz answer on the health port. The operator then takes a valid
    BackupConfiguration (Secret with RESTIC_PASSWORD, local-backend Repository, Deployment) to phase Ready:
    it injected the chart's agent image with the chart's Pushgateway URL, made the trigger CronJob with the
    chart's operator image, and granted Roles, so the ClusterRoles suffice (no request was forbidden).
    Deleting the configuration runs the finalizer.
    """
    release = f"stashlet-{namespace[2:]}"
    cluster_scoped_cleanup(release)
    objects = await apply_release(
        helm, akubectl, release, namespace, "--set", f"watchNamespaces={{{app_namespace}}}"
    )
    operator_spec = container(find(objects, "Deployment", f"{release}-operator"), "operator")

    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component="

    async def one_pod(component: str) -> Obj | None:
        out = await akubectl("get", "pods", "-n", namespace, "-l", selector + component, "-o", "json")
        pods = json.loads(out.stdout)["items"]
        return pods[0] if len(pods) == 1 else None

    operator_pod = await eventually(
        lambda: one_pod("operator"), what="the operator's pod", timeout=60, interval=0.3
    )
    pushgateway_pod = await eventually(
        lambda: one_pod("pushgateway"), what="the Pushgateway's pod", timeout=60, interval=0.3
    )
    assert operator_pod["spec"]["serviceAccountName"] == f"{release}-operator"
    assert container({"spec": {"template": operator_pod}}, "operator")["args"] == operator_spec["args"]
    operator_name = operator_pod["metadata"]["name"]

    def operator_log() -> str:
        result = control_plane.kubectl("logs", "-n", namespace, operator_name, "-c", "operator", check=False)
        return result.stdout + result.stderr

    async def operator_restarts() -> int:
        pod = await akubectl.get("pod", operator_name, namespace)
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    async def available() -> bool:
        deployment = await akubectl.get("deployment", f"{release}-operator", namespace)
        return bool(deployment and deployment.get("status", {}).get("availableReplicas") == 1)

    await eventually(
        available, what="the operator Deployment to be available", timeout=60, interval=0.3, log=operator_log
    )
    pod_ip = (await akubectl.get("pod", pushgateway_pod["metadata"]["name"], namespace) or {})["status"][
        "podIP"
    ]

    async def pushgateway_ready() -> bool:
        try:
            return "OK" in await asyncio.to_thread(http_get, f"http://{pod_ip}:9091/-/ready")
        except OSError:
            return False

    await eventually(pushgateway_ready, what="the Pushgateway pod's /-/ready", timeout=60, interval=0.3)
    operator_ip = (await akubectl.get("pod", operator_name, namespace) or {})["status"]["podIP"]

    async def operator_ready() -> bool:
        try:
            body = await asyncio.to_thread(http_get, f"http://{operator_ip}:8080/readyz")
        except OSError:
            return False
        return bool(json.loads(body) == {"status": "ready"})

    await eventually(
        operator_ready,
        what="the operator's /readyz (its probes' endpoint)",
        timeout=60,
        interval=0.3,
        log=operator_log,
    )
    assert json.loads(await asyncio.to_thread(http_get, f"http://{operator_ip}:8080/healthz")) == {
        "status": "ok"
    }

    app = app_namespace
    await akubectl.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "local-secret", "namespace": app},
                "stringData": {"RESTIC_PASSWORD": "not-a-real-password"},
            },
            {
                "apiVersion": "stash.appscode.com/v1alpha1",
                "kind": "Repository",
                "metadata": {"name": "local-repo", "namespace": app},
                "spec": {
                    "backend": {
                        "local": {"mountPath": "/safe/data", "hostPath": {"path": str(tmp_path / "repo")}},
                        "storageSecretName": "local-secret",
                    }
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": app, "labels": {"app": "web"}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "web",
                                    "image": "busybox",
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["sleep", "3600"],
                                    "volumeMounts": [{"name": "data", "mountPath": "/source/data"}],
                                }
                            ],
                            "volumes": [{"name": "data", "emptyDir": {}}],
                        },
                    },
                },
            },
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "BackupConfiguration",
                "metadata": {"name": "web-backup", "namespace": app},
                "spec": {
                    "repository": {"name": "local-repo"},
                    "schedule": "*/5 * * * *",
                    "target": {
                        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "volumeMounts": [{"name": "data", "mountPath": "/source/data"}],
                        "paths": ["/source/data"],
                    },
                    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                },
            },
        ]
    )

    async def ready() -> Obj | None:
        bc = await akubectl.get("backupconfiguration", "web-backup", app)
        status = (bc or {}).get("status") or {}
        if await operator_restarts():
            pytest.fail(f"the operator's container restarted:\n{operator_log()[-4000:]}")
        return bc if status.get("phase") == "Ready" else None

    await eventually(
        ready, what="BackupConfiguration web-backup to be Ready", timeout=90, interval=0.3, log=operator_log
    )

    workload = await akubectl.get("deployment", "web", app)
    assert workload is not None
    sidecar = container(workload, "stash")
    assert sidecar["image"] == settings.DEFAULT_AGENT_IMAGE
    assert f"--pushgateway-url=http://{release}-pushgateway.{namespace}.svc:9091" in sidecar["args"]
    cronjob = await akubectl.get("cronjob", "stash-trigger-web-backup", app)
    assert cronjob is not None
    job_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["image"] == settings.DEFAULT_OPERATOR_IMAGE
    assert job_pod["serviceAccountName"] == settings.DEFAULT_TRIGGER_SERVICE_ACCOUNT
    for role in ("stashlet-sidecar-web-backup", "stashlet-trigger-web-backup"):
        assert await akubectl.get("role", role, app) is not None, role
    log = operator_log()
    assert "forbidden" not in log.lower(), log[-4000:]

    await akubectl("delete", "backupconfiguration", "web-backup", "-n", app, "--wait=false")

    async def gone() -> bool:
        return await akubectl.get("backupconfiguration", "web-backup", app) is None

    await eventually(
        gone, what="the finalizer to let web-backup go", timeout=60, interval=0.3, log=operator_log
    )
    workload = await akubectl.get("deployment", "web", app)
    assert workload is not None
    assert [c["name"] for c in workload["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert await operator_restarts() == 0, operator_log()[-4000:]


@pytest.mark.cluster
async def test_operator_may_bind_the_kubedump_role_and_no_other_it_lacks(
    helm: Helm,
    akubectl: AsyncKubectl,
    control_plane: ControlPlane,
    namespace: str,
    app_namespace: str,
    cluster_scoped_cleanup: Callable[[str], None],
    tmp_path: Path,
) -> None:
    """With a token of the chart's operator ServiceAccount, a RoleBinding of a kubedump Job's service
    account to the kubedump ClusterRole is allowed (`bind` on that role alone), and it then lets that
    account read every object of the namespace, Secrets included, but write nothing and read nothing
    elsewhere; a RoleBinding to cluster-admin (rights the operator lacks) is forbidden."""
    release = f"stashlet-{namespace[2:]}"
    cluster_scoped_cleanup(release)
    await apply_release(helm, akubectl, release, namespace, "--set", f"watchNamespaces={{{app_namespace}}}")
    operator = token_kubeconfig(
        control_plane, namespace, f"{release}-operator", tmp_path / "operator.kubeconfig"
    )
    await akubectl("create", "serviceaccount", "dump", "-n", app_namespace)

    def binding(name: str, cluster_role: str) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": app_namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": "dump", "namespace": app_namespace}],
            }
        )

    await akubectl(
        "create", "-f", "-", input_text=binding("dump", f"{release}-kubedump"), kubeconfig=operator
    )
    refused = await akubectl(
        "create", "-f", "-", input_text=binding("admin", "cluster-admin"), kubeconfig=operator, check=False
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower(), refused.stderr

    async def can(verb: str, what: str, ns: str) -> bool:
        who = f"--as=system:serviceaccount:{app_namespace}:dump"
        out = await akubectl("auth", "can-i", verb, what, "-n", ns, who, check=False)
        return out.stdout.strip() == "yes"

    for verb, what in [
        ("list", "secrets"),
        ("get", "configmaps"),
        ("watch", "deployments.apps"),
        ("list", "backupconfigurations.stash.appscode.com"),
    ]:
        assert await can(verb, what, app_namespace), (verb, what)
    assert not await can("create", "configmaps", app_namespace)
    assert not await can("delete", "secrets", app_namespace)
    assert not await can("list", "secrets", namespace)


@pytest.mark.cluster
def test_helm_install_dry_run_against_the_server_renders_notes(
    helm: Helm, control_plane: ControlPlane, namespace: str
) -> None:
    """`helm install --dry-run=server` of the chart into a fresh namespace (the API server validating
    every object) succeeds, and its NOTES say where the operator runs, what it watches and where the
    agents push metrics."""
    release = f"stashlet-{namespace[2:]}"
    result = helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--dry-run=server",
        f"--kubeconfig={control_plane.kubeconfig}",
        "--set",
        "watchNamespaces={team-a,team-b}",
    )
    notes = result.stdout[result.stdout.index("NOTES:") :]
    assert f"installed in namespace {namespace}" in notes
    assert "watches BackupConfigurations in team-a, team-b" in notes
    assert f"push their metrics to http://{release}-pushgateway.{namespace}.svc:9091" in notes
    assert f"ClusterRole {release}-kubedump reads every object, Secrets included" in notes
    assert control_plane.kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout == ""
