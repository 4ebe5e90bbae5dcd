"""Chart test fixtures: the pinned helm."""

from __future__ import annotations

import pytest
from tests.chart.helm import Helm

from stashlet.localcluster import tools


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The pinned helm (``tools.ensure("helm")``), its state in a temporary folder."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return Helm(tools.ensure("helm"), env)
