"""The building blocks every Stash API model shares.

``KubeModel`` is the base class: Python attributes are snake_case, the wire names are Stash's camelCase,
and fields this code does not know are kept (``to_dict(from_dict(obj)) == obj``). The small ``Annotated``
markers here (``SchemaFormat``, ``INT_OR_STRING``, ``SchemaDefault``, ``SchemaLimits``, ``CelRule``) carry
what the CRD generator (``stashlet.api.crdgen``) needs beyond the Python type; the models never import the
generator. The markers tighten only the CRD: the models themselves stay lenient, so an object stored
before a rule existed still parses (the reconcilers name what is wrong with it).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StrictBool, StrictInt, model_validator
from pydantic.alias_generators import to_camel

from stashlet.api.durations import GO_DURATION_EXAMPLES, GO_DURATION_PATTERN

# ---------------------------------------------------------------- schema markers


class SchemaFormat(NamedTuple):
    """The OpenAPI ``format`` of a field (``int32``, ``int64``, ``date-time``)."""

    format: str


class IntOrStringMarker(NamedTuple):
    """Marks an ``int | str`` field as a Kubernetes int-or-string (quantities, ports)."""


INT_OR_STRING = IntOrStringMarker()


class SchemaDefault(NamedTuple):
    """A default the API server fills in when the field is absent (as Stash's CRDs do)."""

    value: Any


class SchemaLimits(NamedTuple):
    """Bounds the API server enforces on a value: ``maxLength`` of a string, ``minimum`` of a number,
    ``maxItems`` of a list.

    A CEL rule on a string needs a ``maxLength``, and on list items a ``maxItems`` too (the API server
    refuses a rule whose estimated cost on unbounded values is over its budget).
    """

    max_length: int | None = None
    minimum: int | None = None
    max_items: int | None = None


@dataclass(frozen=True, eq=False)
class SchemaProperties:
    """Fields declared inside a free-form object (an embedded Kubernetes type the models keep as a mapping),
    so that the API server checks them and CEL rules can read them; other fields stay free-form."""

    properties: dict[str, Any]


class CelRule(NamedTuple):
    """A CEL ``x-kubernetes-validations`` rule: on a model's object schema (``cel_rules``), or on one field
    (an ``Annotated`` marker). The API server's message starts with the field's path: the object's, the
    field's, or ``field_path`` below the object (``.retentionPolicy``) when a rule of the object is about one
    of its fields."""

    rule: str
    message: str
    field_path: str | None = None


# ---------------------------------------------------------------- field types


def format_time(value: datetime) -> str:
    """Render a timestamp the way Kubernetes does: RFC 3339, seconds, ``Z`` for UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value.utcoffset() == timedelta(0):
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}"
        return text + "Z"
    return value.isoformat()


Time = Annotated[datetime, PlainSerializer(format_time, return_type=str, when_used="json")]
"""A ``metav1.Time``: a datetime in Python, an RFC 3339 string on the wire."""

Int32 = Annotated[StrictInt, SchemaFormat("int32")]
Int64 = Annotated[StrictInt, SchemaFormat("int64")]
Bool = StrictBool
IntOrString = Annotated[StrictInt | str, INT_OR_STRING]
Quantity = IntOrString
"""A Kubernetes resource quantity (``2Gi``, ``500M``, ``1``)."""

_DURATION_LIMITS = SchemaLimits(max_length=64)
_IS_GO_DURATION = f"self.matches(r'{GO_DURATION_PATTERN}')"

Duration = Annotated[
    str,
    _DURATION_LIMITS,
    CelRule(
        f"{_IS_GO_DURATION} && duration(self) >= duration('0s')",
        f"must be a Go duration of 0s or longer: {GO_DURATION_EXAMPLES}",
    ),
]
"""A wait the user writes (``retryConfig.delay``): Go's duration syntax, as Stash decodes it; 0s is none."""

PositiveDuration = Annotated[
    str,
    _DURATION_LIMITS,
    CelRule(
        f"{_IS_GO_DURATION} && duration(self) > duration('0s')",
        f"must be a Go duration longer than 0s: {GO_DURATION_EXAMPLES}",
    ),
]
"""A limit the user writes (``timeOut``): a Go duration above zero (with 0s every session would fail)."""

FreeForm = dict[str, Any]
"""An embedded Kubernetes type kept as a plain mapping; its schema preserves unknown fields."""


# ---------------------------------------------------------------- base classes


class KubeModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields preserved, exact round trip."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()
    """Validation rules the CRD generator attaches to this model's object schema."""

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Self:
        """Parse a wire object (as decoded from JSON or YAML)."""
        return cls.model_validate(dict(obj))

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, only the fields that were set, unknown fields kept."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class OwnerReference(KubeModel):
    """A ``metav1.OwnerReference``."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: Bool | None = None
    block_owner_deletion: Bool | None = None


class ObjectMeta(KubeModel):
    """The parts of ``metav1.ObjectMeta`` stashlet reads; everything else is kept as it came."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: Int64 | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None


class KubeObject(KubeModel):
    """A top-level object: ``apiVersion``, ``kind`` and ``metadata``.

    ``apiVersion`` and ``kind`` always appear in ``to_dict()``, also when they came from the defaults.
    """

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _type_meta_is_always_set(self) -> Self:
        self.model_fields_set.update({"api_version", "kind"})
        return self


class V1Beta1Object(KubeObject):
    """A top-level object of ``stash.appscode.com/v1beta1``: every kind but Repository."""

    api_version: Literal["stash.appscode.com/v1beta1"] = "stash.appscode.com/v1beta1"


# ---------------------------------------------------------------- shared small types


class ObjectReference(KubeModel):
    """A reference to an object by name, optionally in another namespace (``kmapi.ObjectReference``)."""

    name: str = Field(description="Name of the referent.")
    namespace: str | None = Field(
        default=None, description="Namespace of the referent; the referrer's namespace when empty."
    )


class TypedObjectReference(KubeModel):
    """A reference to an object of any kind (``kmapi.TypedObjectReference``)."""

    api_group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str = Field(description="Name of the referent.")


class TargetRef(KubeModel):
    """The workload or other object a backup or restore is about."""

    api_version: str | None = Field(default=None, description="API version of the target, e.g. apps/v1.")
    kind: str | None = Field(default=None, description="Kind of the target, e.g. Deployment.")
    name: str | None = Field(default=None, description="Name of the target.")
    namespace: str | None = Field(default=None, description="Namespace of the target, when not the same.")


class VolumeMount(KubeModel):
    """A ``core.VolumeMount``: a volume of the target mounted into the stash container."""

    name: str = Field(description="Name of a volume of the target's pod.")
    mount_path: str = Field(description="Path where the volume is mounted in the stash container.")
    sub_path: str | None = None
    sub_path_expr: str | None = None
    read_only: Bool | None = None
    mount_propagation: str | None = None
    recursive_read_only: str | None = None


class Param(KubeModel):
    """A named parameter passed to a Task."""

    name: str
    value: str


class TaskRef(KubeModel):
    """The Task that performs the backup or restore, and its parameters."""

    name: str | None = Field(default=None, description="Name of the Task; empty for workload volumes.")
    params: list[Param] | None = Field(default=None, description="Parameters used to resolve the Task.")


class EmptyDirSettings(KubeModel):
    """Settings of the ``emptyDir`` mounted as the stash container's temporary and cache directory."""

    medium: str | None = Field(default=None, description="Storage medium of the emptyDir, e.g. Memory.")
    size_limit: Quantity | None = Field(default=None, description="Size limit of the emptyDir.")
    disable_caching: Bool | None = Field(default=None, description="Run restic without its cache.")


def _int32(rule: str, message: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "format": "int32",
        "x-kubernetes-validations": [{"rule": rule, "message": message}],
    }


PRIORITY_SETTINGS = SchemaProperties(
    {
        "nice": {
            "type": "object",
            "description": "Niceness of restic: added to the agent's own (nice -n).",
            "properties": {"adjustment": {"type": "integer", "format": "int32"}},
        },
        "ionice": {
            "type": "object",
            "description": "I/O scheduling class and priority of restic (ionice -c -n).",
            "properties": {
                "class": _int32(
                    "self >= 0 && self <= 3",
                    "must be 0 (none), 1 (realtime), 2 (best-effort) or 3 (idle): the kernel has no other "
                    "I/O scheduling class",
                ),
                "classData": _int32(
                    "self >= 0 && self <= 7", "must be 0 to 7: the kernel has no other I/O priority level"
                ),
            },
        },
    }
)
"""``nice`` and ``ionice`` of the container settings, typed as in Stash's CRD, with the kernel's ranges
(whether a realtime class or a negative adjustment is allowed depends on the pod's capabilities: the run
says so, naming the field)."""


class RuntimeSettings(KubeModel):
    """Container- and pod-level settings for the stash container or job (embedded Kubernetes types)."""

    container: Annotated[FreeForm, PRIORITY_SETTINGS] | None = Field(
        default=None, description="Container settings: resources, securityContext, env, nice, ionice, ..."
    )
    pod: FreeForm | None = Field(
        default=None, description="Pod settings: serviceAccountName, nodeSelector, tolerations, ..."
    )


class LabelSelectorRequirement(KubeModel):
    """One requirement of a label selector."""

    key: str
    operator: str = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] | None = None


class LabelSelector(KubeModel):
    """A ``metav1.LabelSelector``."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class Snapshotter(StrEnum):
    """The driver that takes a backup or performs a restore."""

    RESTIC = "Restic"
    VOLUME_SNAPSHOTTER = "VolumeSnapshotter"


Driver = Annotated[Snapshotter, SchemaDefault(Snapshotter.RESTIC.value)]
"""The ``spec.driver`` field: defaults to Restic on the server, as in Stash."""


class ConditionStatus(StrEnum):
    """The status of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """One observation about an object (``kmapi.Condition``); the types are in ``stashlet.api.conditions``."""

    type: str = Field(description="Type of the condition, e.g. RepositoryFound.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(default=None, description="Machine-readable reason of the last transition.")
    message: str | None = Field(default=None, description="Human-readable details of the last transition.")
    last_transition_time: Time | None = Field(default=None, description="When the status last changed.")
    observed_generation: Int64 | None = Field(
        default=None, description="The metadata.generation this condition was set for."
    )
