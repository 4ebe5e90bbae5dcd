"""Fixtures for the API tests: the Stash objects written in the seed documents, and an offline checker.

``seed_objects`` is every object of group ``stash.appscode.com`` found in the fenced ```yaml blocks of
``../shared/seeds/*.txt`` (lines that are just ``...`` elide metadata and are dropped; blocks that are
shell transcripts, starting with ``$``, are not YAML). A test that takes ``seed_object`` runs once per
object. ``crd_errors`` checks an object against the generated CRD schema the way the API server's
structural validation does (types, enums, required fields, unknown fields); CEL rules are not evaluated.
"""

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stashlet.api import crdgen, names

SEEDS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"
FENCED_YAML = re.compile(r"^```yaml[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")

SeedObject = tuple[str, dict[str, Any]]


def _yaml_blocks(text: str) -> Iterator[str]:
    for match in FENCED_YAML.finditer(text):
        lines = [line for line in match.group(1).splitlines() if line.strip() != "..."]
        first = next((line for line in lines if line.strip()), "")
        if first.lstrip().startswith("$"):
            continue
        yield "\n".join(lines)


def load_seed_objects() -> list[SeedObject]:
    """Every stash.appscode.com object in the seeds, with an id naming its file, position and name."""
    found: list[SeedObject] = []
    for path in sorted(SEEDS_DIR.glob("*.txt")):
        for block in _yaml_blocks(path.read_text(encoding="utf-8")):
            for obj in yaml.safe_load_all(block):
                if not isinstance(obj, dict):
                    continue
                group = str(obj.get("apiVersion", "")).partition("/")[0]
                if group != names.GROUP:
                    continue
                name = obj.get("metadata", {}).get("name", "?")
                found.append((f"{path.name[:3]}-{len(found)}-{obj['kind']}-{name}", obj))
    return found


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run tests that take ``seed_object`` once per object in the seeds."""
    if "seed_object" in metafunc.fixturenames:
        seeds = load_seed_objects()
        metafunc.parametrize("seed_object", [obj for _, obj in seeds], ids=[ident for ident, _ in seeds])


@pytest.fixture(scope="session")
def seed_objects() -> list[dict[str, Any]]:
    """Every stash.appscode.com object written in the seed documents."""
    return [obj for _, obj in load_seed_objects()]


# ---------------------------------------------------------------- offline structural validation

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def structural_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Errors in ``value`` against a structural schema, worded like the API server's."""
    if schema.get("x-kubernetes-int-or-string"):
        if _TYPE_CHECKS["integer"](value) or isinstance(value, str):
            return []
        return [f"{path}: Invalid value: {value!r}: must be an integer or a string"]
    expected = schema["type"]
    if not _TYPE_CHECKS[expected](value):
        return [f"{path}: Invalid value: {value!r}: must be of type {expected}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: Unsupported value: {value!r}: supported values: {schema['enum']}"]
    if schema.get("format") == "date-time" and not DATE_TIME.match(value):
        return [f"{path}: Invalid value: {value!r}: must be a date-time"]
    if expected == "array":
        return [
            err
            for i, item in enumerate(value)
            for err in structural_errors(schema["items"], item, f"{path}[{i}]")
        ]
    if expected == "object":
        return _object_errors(schema, value, path)
    return []


def _object_errors(schema: dict[str, Any], value: dict[str, Any], path: str) -> list[str]:
    prefix = f"{path}." if path else ""
    errors: list[str] = []
    present = {key: item for key, item in value.items() if item is not None}  # the server prunes nulls
    for key in schema.get("required", []):
        if key not in present:
            errors.append(f"{prefix}{key}: Required value")
    if "additionalProperties" in schema:
        for key, item in present.items():
            errors += structural_errors(schema["additionalProperties"], item, f"{prefix}{key}")
        return errors
    properties = schema.get("properties")
    if properties is None:  # metadata, free-form objects: anything goes
        return errors
    for key, item in present.items():
        if key in properties:
            errors += structural_errors(properties[key], item, f"{prefix}{key}")
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            errors.append(f'unknown field "{prefix}{key}"')
    return errors


def crd_schema(kind: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of a kind, as generated."""
    info = next(info for info in crdgen.CRDS if info.kind == kind)
    schema: dict[str, Any] = crdgen.build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(scope="session")
def crd_errors() -> Callable[[dict[str, Any]], list[str]]:
    """Check an object against the generated CRD of its kind; returns the errors (none when valid)."""

    def check(obj: dict[str, Any]) -> list[str]:
        return structural_errors(crd_schema(obj["kind"]), obj, "")

    return check
