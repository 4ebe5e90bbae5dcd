"""restic itself: runner, JSON output, exit codes as errors, backends, retention (the bottom layer)."""
