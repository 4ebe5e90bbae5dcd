"""The benches' own client of the API server: HTTPS straight from the admin kubeconfig, no process per call.

A ``kubectl`` per request would cost the machine ~0.1 s of CPU each time and, before a create, put its
own start-up inside the figure being timed; this speaks to the API server directly (the standard
library only) and watches an object until it reaches the state waited for.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


class ApiError(RuntimeError):
    """The API server refused a request; the message names the request and gives its answer."""


class Api:
    """Requests to the cluster of a kubeconfig that holds a client certificate or a token."""

    def __init__(self, kubeconfig: Path | str) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server: str = cluster["server"].rstrip("/")
        self.ca_file: str = cluster["certificate-authority"]
        self.ssl = ssl.create_default_context(cafile=self.ca_file)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if "client-certificate" in user:
            self.ssl.load_cert_chain(user["client-certificate"], user["client-key"])
        if "token" in user:
            self.headers["Authorization"] = f"Bearer {user['token']}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``method path`` with ``body`` as JSON; the answer's JSON. ApiError on a refusal."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=60) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """POST ``obj`` to the collection at ``path``."""
        return self.request("POST", path, obj)

    def wait(
        self, collection: str, name: str, done: Callable[[dict[str, Any]], bool], timeout: float
    ) -> tuple[dict[str, Any], float]:
        """Watch object ``name`` of ``collection`` until ``done(obj)``; that object and the Unix time its
        event arrived. TimeoutError past ``timeout`` seconds, naming the object's last state."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            query = urllib.parse.urlencode(
                {
                    "watch": "true",
                    "fieldSelector": f"metadata.name={name}",
                    "timeoutSeconds": max(1, int(deadline - time.monotonic())),
                }
            )
            req = urllib.request.Request(f"{self.server}{collection}?{query}", headers=self.headers)
            with urllib.request.urlopen(req, context=self.ssl, timeout=timeout) as stream:
                for line in stream:
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        break  # e.g. 410 Gone: watch again from the current state
                    last = event["object"]
                    if done(last):
                        return last, time.time()
        raise TimeoutError(f"{collection}/{name} not done in {timeout:.0f}s; last: {json.dumps(last)[:2000]}")


def token_kubeconfig(admin_kubeconfig: Path | str, token: str, path: Path, namespace: str) -> Path:
    """Write, at ``path``, a kubeconfig for the admin kubeconfig's cluster that presents ``token``."""
    admin = Api(admin_kubeconfig)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sa",
        "clusters": [
            {"name": "c", "cluster": {"server": admin.server, "certificate-authority": admin.ca_file}}
        ],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}],
    }
    path.write_text(json.dumps(config))
    return path


def service_account_token(api: Api, namespace: str, account: str, seconds: int = 7200) -> str:
    """A token of ServiceAccount ``account`` (TokenRequest), created first if missing."""
    base = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    try:
        api.create(base, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}})
    except ApiError as exc:
        if ": 409 " not in str(exc):
            raise
    answer = api.create(
        f"{base}/{account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        },
    )
    return str(answer["status"]["token"])
