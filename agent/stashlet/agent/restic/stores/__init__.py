"""One module per kind of store: each maps its backend spec and Secret to a restic location."""
