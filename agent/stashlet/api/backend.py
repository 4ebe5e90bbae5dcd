"""Where a repository's snapshots are stored: the ``spec.backend`` of Repository and BackupBlueprint.

The field names follow kmodules' objectstore-api ``Backend`` type, which Stash embeds.
"""

from typing import Annotated

from pydantic import Field

from stashlet.api.common import Bool, CelRule, FreeForm, Int64, KubeModel, SchemaLimits

BACKEND_KINDS = ("local", "s3", "gcs", "azure", "swift", "b2", "rest")
"""The wire names of the storage kinds; a Backend sets exactly one of them."""


class LocalSpec(KubeModel):
    """A Kubernetes volume used as the backend, mounted at ``mountPath``.

    The volume source keys (``hostPath``, ``persistentVolumeClaim``, ``nfs``, ...) sit inline, as in a
    ``core.VolumeSource``, and are kept as the embedded Kubernetes objects they are.
    """

    cel_rules = (
        CelRule(
            "self.mountPath.startsWith('/')",
            "must be an absolute path: the volume is mounted there in the agent's container",
            field_path=".mountPath",
        ),
        CelRule(
            r"!has(self.subPath) || !self.subPath.matches(r'(^|/)\.\.(/|$)')",
            "must stay inside the volume: no '..'",
            field_path=".subPath",
        ),
    )

    mount_path: str = Field(description="Where the volume is mounted in the stash container (absolute).")
    sub_path: Annotated[str, SchemaLimits(max_length=4096)] | None = Field(
        default=None, description="Directory inside the volume for the repository (no '..')."
    )
    aws_elastic_block_store: FreeForm | None = None
    azure_disk: FreeForm | None = None
    azure_file: FreeForm | None = None
    cephfs: FreeForm | None = None
    cinder: FreeForm | None = None
    config_map: FreeForm | None = None
    csi: FreeForm | None = None
    downward_api: FreeForm | None = Field(default=None, alias="downwardAPI")
    empty_dir: FreeForm | None = None
    ephemeral: FreeForm | None = None
    fc: FreeForm | None = None
    flex_volume: FreeForm | None = None
    flocker: FreeForm | None = None
    gce_persistent_disk: FreeForm | None = None
    git_repo: FreeForm | None = None
    glusterfs: FreeForm | None = None
    host_path: FreeForm | None = None
    image: FreeForm | None = None
    iscsi: FreeForm | None = None
    nfs: FreeForm | None = None
    persistent_volume_claim: FreeForm | None = None
    photon_persistent_disk: FreeForm | None = None
    portworx_volume: FreeForm | None = None
    projected: FreeForm | None = None
    quobyte: FreeForm | None = None
    rbd: FreeForm | None = None
    scale_io: FreeForm | None = Field(default=None, alias="scaleIO")
    secret: FreeForm | None = None
    storageos: FreeForm | None = None
    vsphere_volume: FreeForm | None = None


class BucketPath(KubeModel):
    """The repository's place in a bucket: the bucket and a directory inside it."""

    bucket: str = Field(description="Name of the bucket.")
    prefix: str | None = Field(default=None, description="Directory inside the bucket for the repository.")


class ContainerPath(KubeModel):
    """The repository's place in a blob container: the container and a directory inside it."""

    container: str = Field(description="Name of the container.")
    prefix: str | None = Field(default=None, description="Directory inside the container for the repository.")


class ConnectionLimit(KubeModel):
    """How many connections restic may open to the store at once."""

    max_connections: Int64 | None = Field(default=None, description="Maximum concurrent connections.")


class S3Spec(BucketPath):
    """An S3 (or S3-compatible) bucket."""

    endpoint: str = Field(description="S3 endpoint, e.g. s3.amazonaws.com or https://minio.example:9000.")
    region: str | None = Field(default=None, description="Region of the bucket.")
    insecure_tls: Bool | None = Field(
        default=None, alias="insecureTLS", description="Skip TLS certificate verification."
    )


class GCSSpec(BucketPath, ConnectionLimit):
    """A Google Cloud Storage bucket."""


class AzureSpec(ContainerPath, ConnectionLimit):
    """An Azure Blob Storage container."""


class SwiftSpec(ContainerPath):
    """An OpenStack Swift container."""


class B2Spec(BucketPath, ConnectionLimit):
    """A Backblaze B2 bucket."""


class RestServerSpec(KubeModel):
    """A restic REST server."""

    url: str | None = Field(default=None, description="URL of the REST server repository.")


class Backend(KubeModel):
    """The storage of a repository: exactly one storage kind, and the Secret with its credentials."""

    cel_rules = (
        CelRule(
            rule=" + ".join(f"(has(self.{kind}) ? 1 : 0)" for kind in BACKEND_KINDS) + " == 1",
            message="exactly one of backend.local, backend.s3, backend.gcs, backend.azure, backend.swift, "
            "backend.b2 or backend.rest must be set",
        ),
    )

    storage_secret_name: str | None = Field(
        default=None, description="Secret holding RESTIC_PASSWORD and the backend's credentials."
    )
    local: LocalSpec | None = Field(default=None, description="A Kubernetes volume as the backend.")
    s3: S3Spec | None = Field(default=None, description="An S3 or S3-compatible bucket.")
    gcs: GCSSpec | None = Field(default=None, description="A Google Cloud Storage bucket.")
    azure: AzureSpec | None = Field(default=None, description="An Azure Blob Storage container.")
    swift: SwiftSpec | None = Field(default=None, description="An OpenStack Swift container.")
    b2: B2Spec | None = Field(default=None, description="A Backblaze B2 bucket.")
    rest: RestServerSpec | None = Field(default=None, description="A restic REST server.")
