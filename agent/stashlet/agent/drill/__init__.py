"""Restore drills: a BackupConfiguration's latest snapshots restored into scratch space and checked."""
