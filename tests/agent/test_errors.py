"""The agent's error tree: every exception class it defines sits under exactly one of the three roots."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import stashlet.agent
from stashlet.agent.errors import AgentError, RefuseInput, ReportFailure, RetryLater
from stashlet.agent.restic.backend_spec import BackendError
from stashlet.agent.restic.errors import RepositoryLocked, ResticError
from stashlet.agent.restore.plan import PlanError

ROOTS = (RetryLater, ReportFailure, RefuseInput)
FAMILIES: frozenset[type[AgentError]] = frozenset({ResticError})
"""Bases that gather classes of different roots for callers that treat them alike; never raised."""


def agent_modules() -> list[ModuleType]:
    """Every module of stashlet.agent, imported."""
    found = pkgutil.walk_packages(stashlet.agent.__path__, prefix="stashlet.agent.")
    return [importlib.import_module(info.name) for info in found if not info.ispkg]


def defined_exceptions() -> list[type[BaseException]]:
    """Every exception class the agent's modules define (not the ones they import)."""
    return [
        cls
        for module in agent_modules()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    ]


def test_the_walk_finds_the_agents_exceptions() -> None:
    """The walk reaches into subpackages and private classes (else the next test proves nothing)."""
    names = {cls.__qualname__ for cls in defined_exceptions()}
    assert {"RepositoryLocked", "SettingsError", "PlanError", "MetricsPushFailed", "_GatewayBusy"} <= names


def test_every_agent_exception_has_exactly_one_root() -> None:
    """Each class says what its catcher can do: retry later, report the failure, or refuse the input."""
    wrong = {
        cls.__qualname__: [root.__name__ for root in ROOTS if issubclass(cls, root)]
        for cls in defined_exceptions()
        if cls not in ROOTS and cls is not AgentError and cls not in FAMILIES
    }
    assert {name: roots for name, roots in wrong.items() if len(roots) != 1} == {}


def test_a_family_base_is_under_no_root_and_never_raised_itself() -> None:
    """A family (ResticError) spans roots, so its catcher cannot act by root: it must only be raised as
    one of its subclasses. No agent source constructs it directly."""
    for family in FAMILIES:
        assert issubclass(family, AgentError)
        assert not issubclass(family, ROOTS)
    names = {family.__name__ for family in FAMILIES}
    package = Path(stashlet.agent.__path__[0])
    constructed = [
        f"{path.relative_to(package)}:{node.lineno}"
        for path in package.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
    ]
    assert constructed == []


def test_a_reason_is_the_one_given_else_the_class_own_else_its_name() -> None:
    """Conditions and events get one CamelCase reason per error, with no table to keep up to date."""
    assert PlanError("spec.target.args: no", reason="InvalidRestoreArgs").reason == "InvalidRestoreArgs"
    assert PlanError("spec.target.args: no").reason == "PlanError"
    assert BackendError("backend needs storageSecretName").reason == "InvalidBackend"
    locked = RepositoryLocked("locked by PID 1", exit_code=11)
    assert (locked.reason, locked.message, locked.exit_code) == ("RepositoryLocked", "locked by PID 1", 11)
