"""Restore drills: a BackupConfiguration's annotations -> a CronJob that restores and checks its snapshots."""
