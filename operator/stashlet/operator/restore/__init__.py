"""RestoreSessions: validation, then the stash-init init-container and its RBAC, and their removal."""
