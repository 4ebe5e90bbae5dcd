"""The agent's HTTP API: probes, status, metrics, instant backups, and its OpenAPI document."""
