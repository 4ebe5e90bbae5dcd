"""The versions of the outside tools stashlet is built, shipped and tested with.

This is the one place they are written. The local control plane builds exactly these, the agent image
installs this restic, and a test checks that the Dockerfiles agree.
"""

from typing import Final

GO_TOOLCHAIN_MIN: Final = "1.25"

KUBERNETES: Final = "v1.35.4"
"""The local cluster's Kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and
the node's kubelet and kube-proxy."""

KUBERNETES_STAGING: Final = "v0.35.4"
"""The k8s.io/* staging modules published with KUBERNETES."""

ETCD: Final = "v3.6.8"
"""The etcd that KUBERNETES is released against."""

RESTIC: Final = "0.18.1"
"""The restic the agent runs. Needs >= 0.17 for the exit codes and JSON messages the agent relies on."""

RESTIC_MIN: Final = (0, 17, 0)

RESTIC_REST_SERVER: Final = "v0.14.0"
PUSHGATEWAY: Final = "v1.11.1"
HELM: Final = "v3.19.0"
COREDNS: Final = "v1.15.0"
"""The cluster DNS the local node runs (Service names resolve from pods)."""
VERSITYGW: Final = "v1.8.0"
"""The S3 server tests use for the ``s3`` backend (Apache-2.0; its posix backend keeps objects as files)."""
FAKE_GCS_SERVER: Final = "v1.56.1"
"""The server tests use for the ``gcs`` backend: the GCS JSON API, as Google's client libraries speak it."""
AZURITE: Final = "3.37.0"
"""Microsoft's Azure Storage emulator (npm ``azurite``), the server tests use for the ``azure`` backend."""
CRICTL: Final = "v1.34.0"
"""The CRI client the local node uses to remove its pod sandboxes when it stops."""
