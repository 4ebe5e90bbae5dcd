"""The chart's Snapshot API (``snapshotsApi``): the APIService, its server from the agent image, the
server's rights, and a serving certificate the APIService's caBundle verifies for the Service's name."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tests.chart.helm import Helm, Obj, find
from tests.chart.test_chart import container, rule_triples

NAME = "stashlet-snapshots-api"


def test_the_snapshot_api_is_off_unless_asked_for(helm: Helm) -> None:
    objects = helm.render()
    assert not [o for o in objects if "snapshots-api" in o["metadata"]["name"]]
    assert not [o for o in objects if o["kind"] == "APIService"]


def test_the_apiservice_reaches_a_server_of_the_agent_image_with_a_certificate_it_trusts(helm: Helm) -> None:
    objects = helm.render("--set", "snapshotsApi.enabled=true", namespace="backup-system")
    apiservice = find(objects, "APIService", "v1alpha1.repositories.stash.appscode.com")
    spec = apiservice["spec"]
    assert (spec["group"], spec["version"]) == ("repositories.stash.appscode.com", "v1alpha1")
    assert spec["service"] == {"name": NAME, "namespace": "backup-system", "port": 443}
    assert "insecureSkipTLSVerify" not in spec

    secret = find(objects, "Secret", f"{NAME}-tls")
    ca = x509.load_pem_x509_certificate(base64.b64decode(spec["caBundle"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    public.verify(
        cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
    )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert f"{NAME}.backup-system.svc" in names

    service = find(objects, "Service", NAME)
    deployment = find(objects, "Deployment", NAME)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME
    assert pod["securityContext"]["runAsNonRoot"] is True
    server = container(deployment, "snapshots-api")
    assert server["image"].startswith("stashlet/agent:")
    assert server["command"] == ["/venv/bin/python", "-m", "stashlet.agent.snapshots_api"]
    assert server["args"] == [
        "--secure-port=8443",
        "--tls-cert-file=/var/run/stashlet/tls/tls.crt",
        "--tls-private-key-file=/var/run/stashlet/tls/tls.key",
        "--tmp-dir=/stash-tmp",
        "--restic-timeout=45",
        "--log-level=info",
    ]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["resources"]["limits"]["memory"] == "256Mi"
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{NAME}-tls"
    assert "emptyDir" in volumes["tmp"]

    role = find(objects, "ClusterRole", NAME)
    assert rule_triples(role["rules"]) == {
        ("stash.appscode.com", "repositories", "get"),
        ("stash.appscode.com", "repositories", "list"),
        ("", "secrets", "get"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    }
    subject = {"kind": "ServiceAccount", "name": NAME, "namespace": "backup-system"}
    assert find(objects, "ClusterRoleBinding", NAME)["subjects"] == [subject]
    reader = find(objects, "RoleBinding", f"{NAME}-auth-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    assert reader["subjects"] == [subject]


def test_the_snapshot_api_values_reach_the_manifests(helm: Helm, tmp_path: Path) -> None:
    resources = {"requests": {"cpu": "5m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
    values: Obj = {
        "snapshotsApi": {
            "enabled": True,
            "replicas": 2,
            "port": 9443,
            "resticTimeoutSeconds": 30,
            "logLevel": "debug",
            "resources": resources,
        },
        "rbac": {"create": False},
    }
    objects = helm.render(values=values, tmp=tmp_path)
    deployment = find(objects, "Deployment", NAME)
    assert deployment["spec"]["replicas"] == 2
    server = container(deployment, "snapshots-api")
    assert server["ports"] == [{"name": "https", "containerPort": 9443, "protocol": "TCP"}]
    assert "--restic-timeout=30" in server["args"]
    assert "--log-level=debug" in server["args"]
    assert server["resources"] == resources
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "RoleBinding")]
    refused = helm.template(
        "--set", "snapshotsApi.enabled=true", "--set", "snapshotsApi.resticTimeoutSeconds=90", check=False
    )
    assert refused.returncode != 0
    assert "resticTimeoutSeconds" in refused.stderr
