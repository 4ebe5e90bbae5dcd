"""The resource-YAML dump: API discovery and paged lists, options and scope, sanitizing, the file tree."""
