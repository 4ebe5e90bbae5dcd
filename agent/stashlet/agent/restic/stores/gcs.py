"""A ``gcs`` backend (Google Cloud Storage): ``gs:<bucket>:/<prefix>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import Parts, StorageSecret, prefix, required

GCS_KEY = "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``gs:`` location; the project and the service-account key file go to ``out``."""
    secret.copy(out.env, "GOOGLE_PROJECT_ID")
    if GCS_KEY in secret.data:
        out.env["GOOGLE_APPLICATION_CREDENTIALS"] = out.file("gcs-service-account.json", secret.raw(GCS_KEY))
    return f"gs:{required(spec, 'gcs', 'bucket')}:/{prefix(spec)}"
