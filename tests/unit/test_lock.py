"""The locks: every dependency pyproject.toml names is pinned, with hashes, at a version its
range allows, and the image's runtime lock agrees with the development lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    found = {canonicalize_name(name): version for name, version in PIN.findall(text)}
    assert len(found) == text.count("==") , f"{lock}: a pin without a hash"
    return found


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


def test_every_declared_dependency_is_locked_at_a_version_its_range_allows() -> None:
    for lock, extras in (("requirements.lock", ()), ("requirements-dev.lock", ("dev",))):
        locked = pins(lock)
        for requirement in declared(*extras):
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} is not in {lock}: run `make lock`"
            assert requirement.specifier.contains(locked[name], prereleases=True), (
                f"{lock} pins {name}=={locked[name]}, outside {requirement.specifier}: "
                "run `make lock`")


def test_the_runtime_lock_holds_the_same_versions_as_the_development_lock() -> None:
    runtime, development = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {n: v for n, v in runtime.items() if development.get(n) != v} == {}
