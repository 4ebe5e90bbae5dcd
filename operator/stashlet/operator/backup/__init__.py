"""BackupConfigurations: validation, status, the trigger CronJob and its run, the sidecar, session history."""
