"""A Task configuration's Jobs (resource dump, stand-alone PVC): the task check, one Job per session."""
