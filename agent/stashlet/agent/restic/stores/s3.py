"""An ``s3`` backend (AWS S3 and its compatibles): ``s3:<endpoint>/<bucket>/<prefix>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stashlet.agent.restic.backend_spec import Parts, StorageSecret, opt, prefix, required


def location(spec: Mapping[str, Any], secret: StorageSecret, out: Parts) -> str:
    """The ``s3:`` location; region, ``insecureTLS`` and the AWS keys go to ``out``."""
    endpoint = (opt(spec, "endpoint") or "s3.amazonaws.com").rstrip("/")
    parts = (endpoint, required(spec, "s3", "bucket"), prefix(spec))
    if opt(spec, "region"):
        out.env["AWS_DEFAULT_REGION"] = opt(spec, "region")
    if spec.get("insecureTLS") is True:
        out.options.append("--insecure-tls")
    secret.copy_pair(out.env, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    secret.copy(out.env, "AWS_SESSION_TOKEN")
    return "s3:" + "/".join(part for part in parts if part)
