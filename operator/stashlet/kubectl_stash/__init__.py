"""``kubectl stash``: the kubectl plugin for stashlet (Stash's command names and flags where Stash has them).

It talks to the API server as the user (their kubeconfig and RBAC, through :mod:`stashlet.kube`), runs
restic in the cluster in a short-lived Pod from the agent image (``stashlet-agent repo``), or on this
machine with ``--local``, and never prints a secret.
"""
