"""What the plugin refuses or fails at: one error type whose message names the object and the field."""

from __future__ import annotations


class PluginError(Exception):
    """A command that cannot be done; the message names the object (``Kind namespace/name``) and, where
    one is at fault, its field. Printed as ``error: <message>`` with exit status 1."""


def object_name(kind: str, namespace: str | None, name: str) -> str:
    """``Kind namespace/name`` (``Kind name`` for a cluster-wide object)."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
