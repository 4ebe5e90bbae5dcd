"""The agent's process loads no aiohttp (nor its multidict/yarl): its HTTP is h11 and wsproto, so its
idle memory does not carry aiohttp's import-time SSL contexts and C extensions (issue 15). The
import-linter contract forbids the imports in the source; this checks what a real process loads."""

from __future__ import annotations

import json
import subprocess
import sys

MODES = (
    "stashlet.agent.cli",
    "stashlet.agent.sidecar",
    "stashlet.agent.job",
    "stashlet.agent.restore_once",
    "stashlet.agent.wipe",
    "stashlet.agent.repo_command",
    "stashlet.agent.drill.run",
    "stashlet.agent.snapshots_api.__main__",
)


def test_no_agent_mode_loads_aiohttp() -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for name in {MODES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'multidict', 'yarl', 'kubernetes_asyncio'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
