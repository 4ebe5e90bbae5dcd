"""Where the stashlet source checkout is: its chart, CRDs, examples and Dockerfiles.

The local cluster is a tool run from a checkout; it finds that checkout by configuration, never by
walking up from its own file: ``$STASHLET_CHECKOUT`` when set, otherwise the git work tree of the
current directory (the README's commands run from the checkout's root).
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path


class CheckoutError(RuntimeError):
    """No stashlet checkout where the configuration points."""


@functools.cache
def root() -> Path:
    """The checkout's root folder (the one holding ``charts/stashlet``)."""
    if explicit := os.environ.get("STASHLET_CHECKOUT"):
        found = Path(explicit).resolve()
    else:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
        ).stdout.strip()
        found = Path(top) if top else Path.cwd()
    if not (found / "charts" / "stashlet" / "Chart.yaml").is_file():
        raise CheckoutError(
            f"{found} is not a stashlet checkout (no charts/stashlet/Chart.yaml); run from the checkout "
            "or set STASHLET_CHECKOUT to it"
        )
    return found


def chart() -> Path:
    """The Helm chart."""
    return root() / "charts" / "stashlet"


def crds() -> Path:
    """The five CRDs (shipped in the chart)."""
    return chart() / "crds"


def examples() -> Path:
    """The example manifests the demo applies."""
    return root() / "examples" / "pause-backup"
