"""Stash's Prometheus metrics: catalog, pure registry builders, Pushgateway push, the backup reporter."""
