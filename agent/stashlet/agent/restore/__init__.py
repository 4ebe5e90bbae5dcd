"""The stash-init restore: plan, snapshot listing, restic's restore, report and session status."""
