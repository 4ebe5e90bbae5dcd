"""The sidecar's backups: the BackupSession daemon, one host's backup run, its plan, the session status."""
