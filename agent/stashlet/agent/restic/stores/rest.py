"""A ``rest`` backend (restic's REST server): ``rest:<url>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from stashlet.agent.restic.backend_spec import MissingSecretKey, Parts, StorageSecret, required


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``rest:`` location; the Secret's user and password go to restic's environment, not the URL."""
    if "REST_SERVER_PASSWORD" in secret.data and "REST_SERVER_USERNAME" not in secret.data:
        raise MissingSecretKey(secret.name, "REST_SERVER_USERNAME", "REST_SERVER_PASSWORD is set")
    if secret.copy(out.env, "REST_SERVER_USERNAME", as_key="RESTIC_REST_USERNAME"):
        secret.copy(out.env, "REST_SERVER_PASSWORD", as_key="RESTIC_REST_PASSWORD")
    url = required(spec, "rest", "url")
    password = urlsplit(url).password  # a password written into the spec's URL is a secret too
    if password:
        out.secrets.add(unquote(password))
        out.secrets.add(password)
    return f"rest:{url}"
