"""Stash's Snapshot API (``repositories.stash.appscode.com/v1alpha1``), served behind the aggregation layer.

``kubectl get snapshots -n demo -l repository=gcs-repo`` and ``kubectl get snapshot gcs-repo-19eb4793 -o
yaml`` reach this server through an APIService: it trusts the API server's front proxy (its client
certificate, its ``X-Remote-*`` headers), asks the API server whether that user may ``get``/``list``
snapshots (a SubjectAccessReview), reads the Repositories and their storage Secrets, and lists each
repository's snapshots with restic. Nothing is stored: every answer is read from the backends.

Run with ``python -m stashlet.agent.snapshots_api`` from the agent image (it carries restic).
"""
