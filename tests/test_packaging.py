"""Packaging: the four folders install as llmos.* (wheel and editable), with py.typed, no stray
top-level packages, and the ``llmos`` console script."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "transport", "kernel", "models", "agents", "cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("llmos-*.whl")
    return built


def test_wheel_maps_folders_under_llmos(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("llmos-")}
    assert tops == {"llmos"}, f"stray top-level entries: {tops - {'llmos'}}"
    for pkg in PACKAGES:
        assert f"llmos/{pkg}/__init__.py" in names
        assert f"llmos/{pkg}/py.typed" in names
    assert "llmos/__init__.py" not in names  # llmos is an implicit namespace
    assert any(n.startswith("llmos-") and n.endswith("/LICENSE") for n in names), names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "llmos = llmos.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_imports(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import llmos.actors, llmos.transport, llmos.kernel, llmos.models, llmos.agents, llmos.cli;"
        "print(llmos.actors.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=True,
    )
    assert done.stdout.strip().startswith(str(target))


def test_editable_install_imports_from_the_checkout() -> None:
    import llmos.actors

    assert Path(llmos.actors.__file__).resolve().parent == ROOT / "actors"


def test_console_script_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmos.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("llmos ")
