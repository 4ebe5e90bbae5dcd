"""Kubedump BackupConfigurations (resource-YAML backups): the task check, one Job per BackupSession."""
