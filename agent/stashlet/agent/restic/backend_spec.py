"""What every store's mapping shares: its errors, read access to the storage Secret, the parts it adds
(environment, options, files), and the spec's string fields. Values never reach an error message."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stashlet.agent.errors import RefuseInput


class BackendError(RefuseInput):
    """The backend spec or its storage Secret cannot be used (message names keys, never values)."""

    reason = "InvalidBackend"


class MissingSecretKey(BackendError):
    """The storage Secret lacks a key the backend needs."""

    reason = "StorageSecretKeyMissing"

    def __init__(self, secret: str, key: str, why: str = "") -> None:
        self.secret = secret
        self.key = key
        super().__init__(f"storage Secret {secret} has no key {key}" + (f" ({why})" if why else ""))


@dataclass
class Parts:
    """What the provider functions add to: environment, global options, files to write."""

    env: dict[str, str]
    files_dir: str
    options: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)

    def file(self, name: str, content: bytes) -> str:
        """The absolute path ``name`` will be written at (under ``files_dir``), with ``content``."""
        if not posixpath.isabs(self.files_dir):
            raise BackendError(f"files directory must be absolute, not {self.files_dir!r}")
        path = posixpath.join(self.files_dir, name)
        self.files[path] = content
        return path


class StorageSecret:
    """Read access to a storage Secret's data that never puts a value into an error message."""

    def __init__(self, name: str, data: Mapping[str, bytes | str]) -> None:
        self.name = name
        self.data = data

    def raw(self, key: str) -> bytes:
        """A key's value as bytes."""
        value = self.data[key]
        return value.encode() if isinstance(value, str) else value

    def text(self, key: str) -> str:
        """A key's value as UTF-8 text."""
        value = self.data[key]
        if isinstance(value, str):
            return value
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BackendError(f"storage Secret {self.name} key {key} is not UTF-8 text") from exc

    def text_values(self) -> list[str]:
        """Every value as text (undecodable bytes replaced): the strings to scrub from output."""
        return [self.raw(key).decode("utf-8", "replace") for key in self.data]

    def require(self, key: str) -> str:
        """A key that must be present and non-empty."""
        if key not in self.data:
            raise MissingSecretKey(self.name, key)
        value = self.text(key)
        if not value:
            raise BackendError(f"storage Secret {self.name} key {key} is empty")
        return value

    def copy(self, env: dict[str, str], key: str, *, as_key: str | None = None) -> bool:
        """Copy ``key`` into ``env`` (as ``as_key``) when the Secret has it; whether it did."""
        if key not in self.data:
            return False
        env[as_key or key] = self.text(key)
        return True

    def copy_pair(self, env: dict[str, str], first: str, second: str) -> None:
        """Copy two keys that come together: both or neither (one alone is an error)."""
        present = [key for key in (first, second) if key in self.data]
        if len(present) == 1:
            missing = second if present[0] == first else first
            raise MissingSecretKey(self.name, missing, f"{present[0]} is set")
        for key in present:
            self.copy(env, key)


def opt(spec: Mapping[str, Any], key: str) -> str:
    """A string field of the spec, stripped; "" when absent or not a string."""
    value = spec.get(key)
    return value.strip() if isinstance(value, str) else ""


def required(spec: Mapping[str, Any], provider: str, key: str) -> str:
    """A string field the store cannot do without; the error names ``<provider>.<key>``."""
    value = opt(spec, key)
    if not value:
        raise BackendError(f"backend {provider} needs {provider}.{key}")
    return value


def prefix(spec: Mapping[str, Any]) -> str:
    """The prefix without leading, trailing or doubled slashes (Stash's manifests write both forms)."""
    return "/".join(part for part in opt(spec, "prefix").split("/") if part)
