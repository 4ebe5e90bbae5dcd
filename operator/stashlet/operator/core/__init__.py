"""What every reconciler shares: the work queue, watches, API access, workload kinds, lookups, conditions,
the Repository checks and its usage policy."""
