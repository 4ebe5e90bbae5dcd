"""Auto-backup: annotated workloads get the Repository and BackupConfiguration their blueprints describe."""
