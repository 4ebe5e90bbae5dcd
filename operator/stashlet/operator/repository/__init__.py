"""What the operator does for Repositories themselves: ``spec.wipeOut``."""
