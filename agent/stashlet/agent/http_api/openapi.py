"""The OpenAPI 3.1 document of the agent's HTTP API (served at ``GET /openapi.json``).

Plain data, built fresh on each call. The status schema describes the document the sidecar serves at
``/status`` (``stashlet.agent.live``); it admits extra fields, so the agent may add some without breaking
clients. A test compares the paths here with the app's router, so neither can change alone.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

PATH_HEALTHZ = "/healthz"
PATH_READYZ = "/readyz"
PATH_STATUS = "/status"
PATH_METRICS = "/metrics"
PATH_BACKUP = "/backup"
PATH_OPENAPI = "/openapi.json"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _text(description: str, example: str) -> Schema:
    return {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}, "example": example}},
    }


def _error(description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


_PROGRESS: Schema = {
    "type": "object",
    "description": "restic's latest progress message, camelCase; fields restic omits are absent.",
    "properties": {
        "percentDone": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "Fraction done, 0 to 1.",
        },
        "totalFiles": {"type": "integer", "description": "Files to process."},
        "filesDone": {"type": "integer", "description": "Files processed."},
        "totalBytes": {"type": "integer", "description": "Bytes to process."},
        "bytesDone": {"type": "integer", "description": "Bytes processed."},
        "secondsElapsed": {"type": "number", "description": "Seconds since restic started."},
        "secondsRemaining": {"type": "number", "description": "restic's estimate of the seconds left."},
        "errorCount": {"type": "integer", "description": "Files restic could not read so far."},
    },
    "additionalProperties": True,
}

_RUNNING: Schema = {
    "type": "object",
    "description": "The session this host is working on now.",
    "required": ["session"],
    "properties": {
        "session": {"type": "string", "description": "Name of the BackupSession or RestoreSession."},
        "operation": {"type": "string", "description": "What the host does, e.g. backup or restore."},
        "startedAt": {"type": "string", "format": "date-time", "description": "When this host began."},
        "progress": _nullable(_ref("Progress")),
    },
    "additionalProperties": True,
}

_RESULT: Schema = {
    "type": "object",
    "description": "How a session ended on this host.",
    "required": ["phase"],
    "properties": {
        "phase": {
            "type": "string",
            "description": "The host's outcome: Succeeded, Failed, Skipped, ...",
            "examples": ["Succeeded", "Failed", "Skipped"],
        },
        "detail": {"type": "string", "description": "Why it failed or was skipped; empty on success."},
        "duration": {"type": "string", "description": "Time the host took, as a Go duration (e.g. 4.5s)."},
        "finishedAt": {"type": "string", "format": "date-time", "description": "When the host was done."},
    },
    "additionalProperties": True,
}

_REPOSITORY: Schema = {
    "type": "object",
    "description": "The Repository's status after the last backup (Stash's field names).",
    "properties": {
        "integrity": {"type": "boolean", "description": "Result of the last integrity check."},
        "totalSize": {"type": "string", "description": "Size of the repository, e.g. 4.154 KiB."},
        "snapshotCount": {"type": "integer", "description": "Snapshots in the repository."},
        "snapshotsRemovedOnLastCleanup": {"type": "integer", "description": "Removed by the last retention."},
        "firstBackupTime": {"type": "string", "format": "date-time"},
        "lastBackupTime": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": True,
}

_REFERENCE: Schema = {
    "type": "object",
    "properties": {
        "kind": {"type": "string"},
        "name": {"type": "string"},
        "namespace": {"type": "string"},
    },
    "additionalProperties": {"type": "string"},
}

_STATUS: Schema = {
    "type": "object",
    "description": "What this agent is and does right now. Holds no secrets.",
    "required": ["invoker", "host"],
    "properties": {
        "mode": {
            "type": "string",
            "enum": ["sidecar", "restore", "job"],
            "description": "How the agent runs: sidecar, restore init-container or one-shot job.",
        },
        "invoker": {**_ref("Reference"), "description": "The BackupConfiguration or RestoreSession served."},
        "target": {**_ref("Reference"), "description": "The workload the agent lives in."},
        "host": {
            "type": "string",
            "description": "This agent's host name for Stash: host-0, host-<ordinal>, node.",
        },
        "leader": {
            "type": ["boolean", "null"],
            "description": (
                "Whether this replica holds the backup Lease: a Deployment's replica holds it while it backs "
                "up a session, and at no other time; null where no Lease is used."
            ),
        },
        "paused": {"type": ["boolean", "null"], "description": "spec.paused of the BackupConfiguration."},
        "watching": {"type": "boolean", "description": "Whether the BackupSession watch is established."},
        "nextSchedule": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "Next time the schedule fires.",
        },
        "running": _nullable(_ref("RunningSession")),
        "waitingForTurn": {
            "type": ["object", "null"],
            "description": (
                "The session this replica waits to back up while another replica of the Deployment holds "
                "the backup Lease; null when it does not wait."
            ),
            "properties": {
                "session": {"type": "string"},
                "lease": {"type": "string", "description": "The Lease it waits for."},
                "since": {"type": "string", "format": "date-time"},
            },
        },
        "lastResults": {
            "type": "object",
            "description": "The latest results on this host, by session name, oldest first.",
            "additionalProperties": _ref("SessionResult"),
        },
        "repository": _nullable(_ref("RepositoryStats")),
        "uptimeSeconds": {"type": "number", "description": "Seconds since the agent started."},
    },
    "additionalProperties": True,
}

_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What went wrong, for a human."}},
}

_WEDGED: Schema = {
    "type": "object",
    "description": "Why the agent is not alive.",
    "required": ["error", "wedged"],
    "properties": {
        "error": {"type": "string", "description": "`not alive:` and the names of what is wedged."},
        "wedged": {
            "type": "object",
            "description": "What stopped making progress (backupSessionWatch, eventLoop), with why.",
            "additionalProperties": {"type": "string"},
            "examples": [{"backupSessionWatch": "no progress for 431s (bound 420s)"}],
        },
    },
}

_ACCEPTED: Schema = {
    "type": "object",
    "required": ["backupSession"],
    "properties": {"backupSession": {"type": "string", "description": "Name of the BackupSession created."}},
}


def _paths() -> Schema:
    return {
        PATH_HEALTHZ: {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "description": "200 while the agent's loops make progress; 503 once one is wedged: the "
                "BackupSession watch ended or has not gone round (event, bookmark, relist, reconnect) "
                "within its bound, or the event loop's heartbeat lags behind its bound. The kubelet "
                "restarts an agent whose probe keeps failing.",
                "responses": {
                    "200": _text("Alive.", "ok"),
                    "503": {
                        "description": "Not alive; the body names what is wedged and why.",
                        "content": {"application/json": {"schema": _ref("Wedged")}},
                    },
                },
            }
        },
        PATH_READYZ: {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness",
                "description": "200 once the watch is established and the settings are loaded.",
                "responses": {
                    "200": _text("Ready.", "ok"),
                    "503": _text("Not ready; the body says why.", "watch not established"),
                },
            }
        },
        PATH_STATUS: {
            "get": {
                "operationId": "status",
                "summary": "What the agent is doing",
                "description": "Invoker, pause state, role, host, the running session with restic's "
                "progress, the last result per session, the repository's stats and the next schedule.",
                "responses": {
                    "200": {
                        "description": "The agent's status.",
                        "content": {"application/json": {"schema": _ref("AgentStatus")}},
                    },
                    "500": _error("The status could not be produced."),
                },
            }
        },
        PATH_METRICS: {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "The Stash metrics this agent published last, in the Prometheus text format "
                "(or OpenMetrics when the Accept header asks for it).",
                "responses": {
                    "200": {
                        "description": "The metrics.",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    },
                    "500": _error("The metrics could not be collected."),
                },
            }
        },
        PATH_BACKUP: {
            "post": {
                "operationId": "backup",
                "summary": "Take an instant backup",
                "description": "Creates a BackupSession for this agent's BackupConfiguration, recorded like "
                "any other. Accepted from loopback without credentials; from elsewhere only with "
                "`Authorization: Bearer <token>` matching the mounted token file (re-read on each request). "
                "No request body.",
                "security": [{}, {"bearerToken": []}],
                "responses": {
                    "202": {
                        "description": "The BackupSession was created; it runs like a scheduled one.",
                        "content": {"application/json": {"schema": _ref("BackupAccepted")}},
                    },
                    "401": {
                        **_error("Not on loopback, and no or a wrong bearer token."),
                        "headers": {
                            "WWW-Authenticate": {
                                "description": "The Bearer challenge.",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "403": _error("Not on loopback, and no API token is configured or available."),
                    "409": _error("The agent refused, e.g. the configuration is paused without the opt-in."),
                    "500": _error("The BackupSession could not be created."),
                },
            }
        },
        PATH_OPENAPI: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document of this API.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy); ``version`` is the agent's version."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "stashlet agent",
                "version": version,
                "description": "The HTTP API of the stashlet agent (sidecar, restore init-container or job): "
                "probes, status, Prometheus metrics, and instant backups.",
            },
            "paths": _paths(),
            "components": {
                "securitySchemes": {
                    "bearerToken": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "The content of the agent's API token file (a mounted Secret).",
                    }
                },
                "schemas": {
                    "AgentStatus": _STATUS,
                    "Reference": _REFERENCE,
                    "RunningSession": _RUNNING,
                    "Progress": _PROGRESS,
                    "SessionResult": _RESULT,
                    "RepositoryStats": _REPOSITORY,
                    "BackupAccepted": _ACCEPTED,
                    "Wedged": _WEDGED,
                    "Error": _ERROR,
                },
            },
        }
    )
