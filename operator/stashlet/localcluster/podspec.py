"""What a kubelet computes from a pod spec before it starts a container, as pure functions.

Pods, containers, Secrets and ConfigMaps are plain dicts in the API's JSON shape (camelCase). The
Secrets and ConfigMaps a pod refers to are fetched first (:func:`referenced_objects`) and handed in,
``None`` standing for one that does not exist. Errors name the pod, the container and what is
missing, as the kubelet's ``CreateContainerConfigError`` does.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

_FIELD_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


class ContainerConfigError(RuntimeError):
    """The container cannot be configured (CreateContainerConfigError): a missing object or key."""

    reason = "CreateContainerConfigError"


@dataclass(frozen=True)
class Objects:
    """The Secrets and ConfigMaps of a pod's namespace that it refers to (None: not found)."""

    secrets: Mapping[str, Obj | None] = field(default_factory=dict)
    configmaps: Mapping[str, Obj | None] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeResources:
    """What ``limits.*`` resolve to when a container sets no limit (the node's allocatable)."""

    cpu: str = "1"
    memory: str = "0"
    ephemeral_storage: str = "0"

    @classmethod
    def of_host(cls) -> NodeResources:
        """This machine's CPUs and memory."""
        memory = 0
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return cls(cpu=str(os.cpu_count() or 1), memory=str(memory))


def pod_ref(pod: Obj) -> str:
    """``namespace/name`` of a pod."""
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``.

    Unknown references and incomplete ones are kept as written, like the kubelet does.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def parse_quantity(value: str | int | float) -> Decimal:
    """A resource quantity (``250m``, ``1Gi``, ``1e3``) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"not a resource quantity: {value!r}")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation as exc:
        raise ValueError(f"not a resource quantity: {value!r}") from exc


def resource_value(container: Obj, resource: str, divisor: str | None, node: NodeResources) -> str:
    """``resourceFieldRef``: ``limits.cpu`` etc. divided by ``divisor`` and rounded up, as the kubelet."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ValueError(f"unsupported resource {resource!r}")
    value = container.get("resources", {}).get(kind, {}).get(name)
    if value is None:
        if kind == "requests":
            value = container.get("resources", {}).get("limits", {}).get(name, "0")
        else:
            value = {"cpu": node.cpu, "memory": node.memory, "ephemeral-storage": node.ephemeral_storage}.get(
                name, "0"
            )
    amount = parse_quantity(value)
    by = parse_quantity(divisor or "1")
    if by == 0:
        raise ValueError(f"divisor of {resource!r} is zero")
    if name == "cpu":
        # CPU is counted in whole milli-cores before dividing, like ConvertResourceCPUToString.
        return str(math.ceil(math.ceil(amount * 1000) / math.ceil(by * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(by)))


def field_value(pod: Obj, field_path: str, *, volume: bool = False) -> str:
    """A downward-API ``fieldRef``; whole label and annotation maps only in volumes."""
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs", [])),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs", [])),
    }
    if field_path in simple:
        return str(simple[field_path])
    if match := _FIELD_SUBSCRIPT.match(field_path):
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    if volume and field_path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(field_path.split(".")[1], {})
        return "".join(f'{k}="{_escape(v)}"\n' for k, v in sorted(values.items()))
    raise ValueError(f"unsupported fieldRef fieldPath {field_path!r}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def secret_data(secret: Obj) -> dict[str, bytes]:
    """A Secret's data decoded (``stringData`` is folded in by the API server already)."""
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def configmap_data(configmap: Obj) -> dict[str, bytes]:
    """A ConfigMap's ``data`` and ``binaryData`` as bytes."""
    data = {k: v.encode() for k, v in (configmap.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()})
    return data


def referenced_objects(pod: Obj) -> tuple[set[str], set[str]]:
    """Names of the Secrets and ConfigMaps a pod's env, envFrom and volumes refer to."""
    secrets: set[str] = set()
    configmaps: set[str] = set()
    spec = pod.get("spec", {})
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"]["name"])
        for env in container.get("env", []):
            value_from = env.get("valueFrom", {})
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"]["name"])
            if "configMapKeyRef" in value_from:
                configmaps.add(value_from["configMapKeyRef"]["name"])
    for volume in spec.get("volumes", []):
        sources = [volume, *volume.get("projected", {}).get("sources", [])]
        for source in sources:
            if "secret" in source:
                secrets.add(source["secret"].get("secretName") or source["secret"].get("name", ""))
            if "configMap" in source:
                configmaps.add(source["configMap"]["name"])
    return secrets - {""}, configmaps - {""}


def _lookup(
    objects: Objects, kind: str, name: str, key: str | None, namespace: str
) -> tuple[bytes | dict[str, bytes] | None, str]:
    """An object's data (or one key of it) and, when missing, the kubelet's message for it."""
    if kind == "Secret":
        obj = objects.secrets.get(name)
        data = secret_data(obj) if obj is not None else None
        missing_obj = f'secret "{name}" not found'
    else:
        obj = objects.configmaps.get(name)
        data = configmap_data(obj) if obj is not None else None
        missing_obj = f'configmap "{name}" not found'
    if data is None:
        return None, missing_obj
    if key is None:
        return data, ""
    if key not in data:
        return None, f'couldn\'t find key "{key}" in {kind} {namespace}/{name}'
    return data[key], ""


def build_env(
    pod: Obj,
    container: Obj,
    objects: Objects,
    *,
    base: Mapping[str, str],
    service: Mapping[str, str],
    node: NodeResources | None = None,
) -> dict[str, str]:
    """The container's environment as the kubelet makes it.

    ``base`` is what the image would bring (PATH, HOME, HOSTNAME), ``service`` the Service variables
    (KUBERNETES_SERVICE_HOST ...). ``envFrom`` first, then ``env`` in order, each ``value`` expanded
    against what is defined so far; Service variables fill in what the container does not set.
    """
    node = node or NodeResources.of_host()
    namespace = pod["metadata"].get("namespace", "")
    where = f'pod {pod_ref(pod)} container "{container["name"]}"'
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            kind, ref = "Secret", source["secretRef"]
        else:
            kind, ref = "ConfigMap", source["configMapRef"]
        data, problem = _lookup(objects, kind, ref["name"], None, namespace)
        if data is None:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f"{where} envFrom: {problem}")
        assert isinstance(data, dict)  # no key asked for: the whole map
        for key, value in data.items():
            name = source.get("prefix", "") + key
            if _ENV_NAME.match(name):
                env[name] = value.decode("utf-8", "surrogateescape")
    for var in container.get("env", []):
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), {**service, **env})
            continue
        value_from = var["valueFrom"]
        if "fieldRef" in value_from:
            env[name] = field_value(pod, value_from["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in value_from:
            ref = value_from["resourceFieldRef"]
            target = _container(pod, ref.get("containerName")) if ref.get("containerName") else container
            env[name] = resource_value(target, ref["resource"], ref.get("divisor"), node)
        else:
            kind, ref = (
                ("Secret", value_from["secretKeyRef"])
                if "secretKeyRef" in value_from
                else ("ConfigMap", value_from["configMapKeyRef"])
            )
            data, problem = _lookup(objects, kind, ref["name"], ref["key"], namespace)
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{where} env "{name}": {problem}')
            assert isinstance(data, bytes)
            env[name] = data.decode("utf-8", "surrogateescape")
    return {**base, **{k: v for k, v in service.items() if k not in env}, **env}


def _container(pod: Obj, name: str) -> Obj:
    spec = pod.get("spec", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        if container["name"] == name:
            found: Obj = container
            return found
    raise ValueError(f"pod {pod_ref(pod)} has no container {name!r}")


def find_container(pod: Obj, name: str, *, init: bool) -> Obj:
    """The (init) container ``name`` of a pod; the error lists the ones there are."""
    kind = "initContainers" if init else "containers"
    containers = pod.get("spec", {}).get(kind, [])
    for container in containers:
        if container["name"] == name:
            found: Obj = container
            return found
    names = ", ".join(c["name"] for c in containers) or "none"
    what = "init container" if init else "container"
    raise LookupError(f"pod {pod_ref(pod)} has no {what} {name!r} (it has: {names})")


def command_argv(
    pod: Obj, container: Obj, env: Mapping[str, str], entrypoints: Mapping[str, Sequence[str]]
) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; a missing command comes from ``entrypoints``.

    There are no images: an image's ENTRYPOINT is looked up in ``entrypoints`` by the full image
    reference or by the reference without tag or digest.
    """
    command = list(container.get("command") or [])
    if not command:
        image = container.get("image", "")
        bare = re.sub(r"(@.*|:[^/:]*)$", "", image)
        entry = entrypoints.get(image) or entrypoints.get(bare)
        if not entry:
            raise ContainerConfigError(
                f'pod {pod_ref(pod)} container "{container["name"]}" has no command and image '
                f"{image!r} has no entrypoint known to the process kubelet (pass entrypoints=)"
            )
        command = list(entry)
    return [expand(arg, env) for arg in command + list(container.get("args") or [])]
