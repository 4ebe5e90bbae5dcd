"""A ``gcs`` backend (Google Cloud Storage): ``gs:<bucket>:/<prefix>``.

The Secret's ``GOOGLE_SERVICE_ACCOUNT_JSON_KEY`` (a key file as the cloud console downloads it) is written
to a file that ``GOOGLE_APPLICATION_CREDENTIALS`` names; restic's Google client signs a token request with
it. Without that key restic finds credentials the way Google's clients do (workload identity, the metadata
server). A GCS-compatible server other than Google's is reached through the agent's own
``STORAGE_EMULATOR_HOST`` (``runtimeSettings.container.env``), which restic inherits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import BackendError, Parts, StorageSecret, prefix, required

GCS_KEY = "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``gs:`` location; the project and the service-account key file go to ``out``."""
    secret.copy(out.env, "GOOGLE_PROJECT_ID")
    if GCS_KEY in secret.data:
        out.env["GOOGLE_APPLICATION_CREDENTIALS"] = out.file("gcs-service-account.json", key_file(secret))
    return f"gs:{required(spec, 'gcs', 'bucket')}:/{prefix(spec)}"


def key_file(secret: StorageSecret) -> bytes:
    """The key file's content, refused when it is not a JSON object: restic would only say that
    ``GOOGLE_APPLICATION_CREDENTIALS``, a name the user never wrote, holds bad JSON. The error names the
    Secret and key, never the value (nor chains the parser's error, which carries the document)."""
    raw = secret.raw(GCS_KEY)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise BackendError(
            f"storage Secret {secret.name} key {GCS_KEY} is not a JSON key file (the service account's "
            "key as downloaded, a JSON object)"
        )
    return raw
