"""What several integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lifeline.store import ServiceApplication


class Plain(ServiceApplication):
    """A service's application with no lock of its own around its writes (monitor's engine
    lock lets one write at a time reach the store), in a schema of its own."""
    name = "plain"


@pytest.fixture
def plain(database_url: str) -> Iterator[ServiceApplication]:
    application = Plain(database_url)
    yield application
    application.close()
