"""The built wheel is all a machine needs: installed into a fresh venv, away from the source
tree, `lifeline up` starts the four services and `lifeline demo` plays the flood to closure.

This is the install step the Dockerfile's runtime stage runs (docker itself cannot run here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What the wheel is built from (the Dockerfile's builder stage copies the same).
SOURCES = ("pyproject.toml", "README.md", "libs", "services", "plans", "scenarios", "grids",
           "coupled_risks", "roads", "coverage")
SERVICES = ("monitor", "dispatch", "resources", "review")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(command: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> str:
    """Run a command; fail with everything it printed if it fails."""
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert done.returncode == 0, (f"{' '.join(map(str, command))} exited {done.returncode}:\n"
                                  f"{done.stdout[-6000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A folder others may enter, as a venv in /opt or a home is: run as root, the embedded
    PostgreSQL runs as its own user and executes its binaries from the venv (pytest's
    tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="lifeline-wheel-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(base: Path) -> Path:
    """A fresh venv holding the wheel built from a copy of the sources (so the build leaves
    nothing in the work tree); its bin/ folder."""
    source = base / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".mypy_cache")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = run([*pip, "wheel", "--no-deps", "-w", base / "dist", source], cwd=base)
    # issue 13: the project's own metadata must not make setuptools warn on every install.
    assert not re.search(r"BuildBackendWarning|SetuptoolsDeprecationWarning", built), built
    (wheel,) = (base / "dist").glob("lifeline-*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    # --no-compile: the .pyc files are written on first import instead (the image compiles).
    into = [*pip, "--python", venv / "bin" / "python", "install", "--no-compile"]
    run([*into, "--require-hashes", "--no-deps", "-r", ROOT / "requirements.lock"], cwd=base)
    run([*into, "--no-deps", wheel], cwd=base)
    return venv / "bin"


def fresh_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LIFELINE_STATE_DIR")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env | extra


def shipped(bin_dir: Path, module: str, *parts: str) -> Path:
    """Where the installed wheel keeps a data file, checked to be inside the fresh venv."""
    found = Path(run([bin_dir / "python", "-c",
                      f"import {module}, pathlib; print(pathlib.Path({module}.__file__).parent)"],
                     cwd=bin_dir).strip()).joinpath("shipped", *parts)
    assert found.is_file(), f"the wheel does not ship {found}"
    assert bin_dir.parent in found.resolve().parents, f"{found} is not in the fresh venv"
    return found


def test_the_wheel_ships_every_data_file_the_services_read(installed: Path) -> None:
    for module, parts in [("lifeline", ("plans", "schema.json")),
                          ("lifeline", ("plans", "urban_flooding.toml")),
                          ("lifeline", ("scenarios", "underpass_flood.toml")),
                          ("lifeline", ("scenarios", "high_rise_fire.toml")),
                          ("lifeline_monitor", ("grids", "xuhui.toml")),
                          ("lifeline_monitor", ("coupled_risks", "metro_flooding.toml")),
                          ("lifeline_resources", ("roads", "xujiahui_demo.geojson")),
                          ("lifeline_resources", ("coverage", "xuhui.toml"))]:
        shipped(installed, module, *parts)


def test_a_fresh_install_starts_the_stack_and_plays_the_demo(installed: Path,
                                                            base: Path) -> None:
    elsewhere = base / "elsewhere"   # no plans/, scenarios/ ... around: only the wheel's
    elsewhere.mkdir()
    # resources with the shipped road graph and coverage, as deploy/k8s's option gives it.
    env = fresh_env(installed,
                    LIFELINE_ROADS=str(shipped(installed, "lifeline_resources", "roads",
                                               "xujiahui_demo.geojson")),
                    LIFELINE_COVERAGE=str(shipped(installed, "lifeline_resources", "coverage",
                                                  "xuhui.toml")))

    run([installed / "lifeline", "up"], cwd=elsewhere, env=env, timeout=120)
    stopped = ""
    try:
        status = json.loads(run([installed / "lifeline", "status", "--json"],
                                cwd=elsewhere, env=env))
        health = {row["component"]: row["health"] for row in status}
        assert all(health.get(s) == "SERVING" for s in (*SERVICES, "console")), status
        link = run([installed / "lifeline", "login-link", "--role", "viewer"], cwd=elsewhere,
                   env=env)
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+/signin#token=[\w.-]+\n", link), link
    finally:
        stopped = run([installed / "lifeline", "down"], cwd=elsewhere, env=env, timeout=120)
    # Every process it started, the console included.
    assert all(f"stopped {name}" in stopped for name in (*SERVICES, "console", "nats",
                                                          "postgres")), stopped

    demo = run([installed / "lifeline", "demo"], cwd=elsewhere, env=env, timeout=240)
    assert "declared urban_flooding grade III" in demo, demo
    assert re.search(r"final state\s+CLOSED", demo), demo
    assert "done: every process stopped" in demo
