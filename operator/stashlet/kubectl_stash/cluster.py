"""The user's way to the API server: their kubeconfig (``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config``) and context (``--context``), and the namespace to work in (``-n``, else the context's,
else ``default``), as kubectl finds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stashlet.kube.config import KubeconfigError, kubeconfig_config, kubeconfig_paths
from stashlet.kube.rest import RestClient
from stashlet.kubectl_stash.errors import PluginError

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Target:
    """Which cluster, as whom, and the namespace commands act in."""

    paths: list[Path]
    context: str | None
    namespace: str


def _context_namespace(paths: list[Path], context: str | None) -> str | None:
    """The namespace the chosen (or current) context names, as kubectl merges kubeconfig files."""
    docs: list[Mapping[str, Any]] = []
    for path in paths:
        if path.is_file():
            doc = yaml.safe_load(path.read_text())
            if isinstance(doc, Mapping):
                docs.append(doc)
    current = context or next((str(d["current-context"]) for d in docs if d.get("current-context")), None)
    for doc in docs:
        for entry in doc.get("contexts") or []:
            if isinstance(entry, Mapping) and entry.get("name") == current:
                namespace = (entry.get("context") or {}).get("namespace")
                return str(namespace) if namespace else None
    return None


def resolve(kubeconfig: str | None, context: str | None, namespace: str | None) -> Target:
    """The target of this invocation from the global flags."""
    paths = [Path(kubeconfig)] if kubeconfig else kubeconfig_paths()
    try:
        chosen = namespace or _context_namespace(paths, context) or DEFAULT_NAMESPACE
    except (OSError, yaml.YAMLError) as exc:
        raise PluginError(f"kubeconfig {', '.join(map(str, paths))}: cannot be read: {exc}") from exc
    return Target(paths, context, chosen)


def connect(target: Target) -> RestClient:
    """A client as the kubeconfig's user; close it when done."""
    try:
        return RestClient(kubeconfig_config(target.paths, target.context))
    except KubeconfigError as exc:
        raise PluginError(str(exc)) from exc
