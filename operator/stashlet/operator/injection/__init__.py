"""One builder for every agent container the operator writes (the sidecar, stash-init, the kubedump Job's
container) and the RBAC they and the trigger CronJob run with: pure."""
