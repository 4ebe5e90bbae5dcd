"""Packaging guards: the namespace-package rule, and Dockerfiles that agree with the project's pins."""

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from stashlet.api import versions
from stashlet.localcluster.dockerfileimages import copied_sources

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_INIT = [
    "agent/__init__.py",
    "operator/__init__.py",
    "agent/stashlet/__init__.py",
    "operator/stashlet/__init__.py",
]


def test_no_init_py_where_the_namespace_package_forbids_it() -> None:
    """agent/, operator/ and both stashlet/ folders have no __init__.py (it would break the namespace or
    shadow the standard library's operator module)."""
    present = [p for p in FORBIDDEN_INIT if (ROOT / p).exists()]
    assert present == []


def test_operator_is_still_the_standard_library_module() -> None:
    """`import operator` gives the standard library's module, not our folder."""
    import operator

    assert hasattr(operator, "itemgetter")


def dockerfile(name: str) -> str:
    return (ROOT / name).read_text()


def arg(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert match, f"ARG {name} missing"
    return match.group(1)


@pytest.mark.parametrize(
    ("name", "copied", "dropped_script"),
    [
        ("Dockerfile.agent", ["pyproject.toml", "README.md", "agent"], "stashlet-operator"),
        (
            "Dockerfile.operator",
            ["pyproject.toml", "README.md", "agent/stashlet/api", "agent/stashlet/kube", "operator"],
            "stashlet-agent",
        ),
    ],
)
def test_each_image_copies_only_its_own_code_and_pins_python(
    name: str, copied: list[str], dropped_script: str
) -> None:
    """The agent image is built from agent/ alone; the operator's from operator/ plus the shared api and
    kube packages, never the agent's code; each drops the other's console script; both use the project's
    Python."""
    text = dockerfile(name)
    assert copied_sources(text) == copied
    assert f"rm /venv/bin/{dropped_script}" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = project["requires-python"].removeprefix(">=")
    assert arg(text, "PYTHON_VERSION") == minimum
    assert "python3-debian12" in text  # Debian 12's Python is 3.11
    assert minimum == "3.11"


def test_only_the_operator_image_installs_the_operators_http_stack() -> None:
    """aiohttp and kubernetes-asyncio are the ``operator`` extra: the operator image asks for it, the agent
    image (which never imports them: import-linter) installs the bare project and so does not carry them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = " ".join(project["dependencies"])
    extra = " ".join(project["optional-dependencies"]["operator"])
    for package in ("aiohttp", "kubernetes-asyncio"):
        assert package not in required
        assert package in extra
    assert '/venv/bin/pip install --no-cache-dir ".[operator]"' in dockerfile("Dockerfile.operator")
    assert "/venv/bin/pip install --no-cache-dir . " in dockerfile("Dockerfile.agent")


def test_the_shared_vocabulary_lives_under_the_agents_root() -> None:
    """stashlet.api and stashlet.kube sit under agent/stashlet, so the agent image needs nothing else."""
    import stashlet.api
    import stashlet.kube

    for package in (stashlet.api, stashlet.kube):
        assert Path(next(iter(package.__path__))).resolve().is_relative_to(ROOT / "agent" / "stashlet")
    assert not (ROOT / "operator" / "stashlet" / "api").exists()
    assert not (ROOT / "operator" / "stashlet" / "kube").exists()


def test_agent_image_ships_the_pinned_restic() -> None:
    """Dockerfile.agent builds exactly the restic version the tests run."""
    assert arg(dockerfile("Dockerfile.agent"), "RESTIC_VERSION") == versions.RESTIC


@pytest.mark.parametrize(
    ("name", "script"), [("Dockerfile.agent", "stashlet-agent"), ("Dockerfile.operator", "stashlet-operator")]
)
def test_dockerfile_entry_points_exist(name: str, script: str) -> None:
    """Each image's entry point is a console script the project declares, and is smoke-tested at build."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    text = dockerfile(name)
    assert script in scripts
    assert f'ENTRYPOINT ["/venv/bin/{script}"]' in text
    assert f'RUN ["/venv/bin/{script}", "--help"]' in text
    assert re.search(r"^USER 65532", text, re.MULTILINE)


def test_the_wheel_ships_the_product_and_not_the_local_cluster(tmp_path: Path) -> None:
    """The runtime wheel (what the images install) holds the agent, the operator and their shared
    api/kube layers, and neither the local cluster nor a `stashlet-cluster` script."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("stashlet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    for package in ("agent", "operator", "api", "kube"):
        assert any(n.startswith(f"stashlet/{package}/") for n in names), package
    assert not [n for n in names if n.startswith("stashlet/localcluster/")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        scripts = archive.read(entry_points).decode()
    assert "stashlet-agent" in scripts
    assert "stashlet-cluster" not in scripts
