"""The pinned helm, run with private home folders against the chart in this checkout."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "stashlet"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Helm:
    """The pinned helm with private home folders."""

    binary: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm; with ``check`` a failure fails the test with helm's own words."""
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env, check=False, timeout=120
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def template(
        self,
        *extra: str,
        release: str = "stashlet",
        namespace: str = "stashlet-system",
        values: Obj | None = None,
        tmp: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``helm template RELEASE charts/stashlet -n NAMESPACE`` with an optional values file."""
        args = ["template", release, str(CHART), "--namespace", namespace, *extra]
        if values is not None:
            if tmp is None:
                raise ValueError("a values file needs a folder")
            path = tmp / f"values-{len(list(tmp.glob('values-*.yaml')))}.yaml"
            path.write_text(yaml.safe_dump(values, sort_keys=False))
            args += ["--values", str(path)]
        return self.run(*args, check=check)

    def render(self, *extra: str, **kwargs: Any) -> list[Obj]:
        """The rendered objects (comments and empty documents dropped)."""
        out = self.template(*extra, **kwargs).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one rendered object of ``kind`` called ``name``."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered ({[o['kind'] for o in objects]})"
    return found[0]
