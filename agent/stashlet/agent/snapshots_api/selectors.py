"""Kubernetes label selectors (``repository=a``, ``hostname!=db``, ``repository in (a,b)``, ``!x``, ``x``):
parsed once, matched against a label set, as the API server matches them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stashlet.agent.errors import RefuseInput

_KEY = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_./]*[a-z0-9A-Z])?)$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
_COMPARE = re.compile(r"^\s*([^!=<>\s]+)\s*(==|!=|=|<|>)\s*(\S*)\s*$")


class SelectorError(RefuseInput):
    """A label selector that does not parse; the message quotes the requirement."""


@dataclass(frozen=True)
class Requirement:
    """One requirement: ``key``, an operator (``exists``, ``!``, ``=``, ``!=``, ``in``, ``notin``, ``<``,
    ``>``) and its values."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` meet this requirement."""
        value = labels.get(self.key)
        if self.operator == "exists":
            return value is not None
        if self.operator == "!":
            return value is None
        if self.operator in ("=", "in"):
            return value is not None and value in self.values
        if self.operator in ("!=", "notin"):
            return value is None or value not in self.values
        if value is None:
            return False
        try:
            number, bound = int(value), int(self.values[0])
        except ValueError:
            return False
        return number < bound if self.operator == "<" else number > bound


@dataclass(frozen=True)
class Selector:
    """Requirements that must all hold (the empty selector matches everything)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` meet every requirement."""
        return all(r.matches(labels) for r in self.requirements)

    def without(self, key: str) -> Selector:
        """The requirements on every key but ``key``."""
        return Selector(tuple(r for r in self.requirements if r.key != key))


def _split(text: str) -> list[str]:
    """The requirements of ``text``: split at commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _checked(key: str, values: tuple[str, ...], text: str) -> tuple[str, tuple[str, ...]]:
    if not _KEY.match(key) or len(key) > 317:
        raise SelectorError(f"unable to parse requirement {text.strip()!r}: invalid label key {key!r}")
    for value in values:
        if len(value) > 63 or not _VALUE.match(value):
            raise SelectorError(
                f"unable to parse requirement {text.strip()!r}: invalid label value {value!r}"
            )
    return key, values


def _requirement(text: str) -> Requirement:
    stripped = text.strip()
    if not stripped:
        raise SelectorError("unable to parse requirement: an empty requirement")
    found = _SET.match(stripped)
    if found:
        values = tuple(v.strip() for v in found.group(3).split(","))
        key, values = _checked(found.group(1), values, text)
        return Requirement(key, found.group(2), values)
    found = _COMPARE.match(stripped)
    if found:
        operator = "=" if found.group(2) == "==" else found.group(2)
        key, values = _checked(found.group(1), (found.group(3),), text)
        if operator in ("<", ">") and not re.fullmatch(r"-?\d+", values[0]):
            raise SelectorError(f"unable to parse requirement {stripped!r}: {operator} needs an integer")
        return Requirement(key, operator, values)
    if stripped.startswith("!"):
        return Requirement(_checked(stripped[1:].strip(), (), text)[0], "!")
    return Requirement(_checked(stripped, (), text)[0], "exists")


def parse(text: str) -> Selector:
    """The selector written as ``text`` (the ``labelSelector`` query parameter); SelectorError if it does
    not parse."""
    if not text.strip():
        return Selector()
    return Selector(tuple(_requirement(part) for part in _split(text)))
