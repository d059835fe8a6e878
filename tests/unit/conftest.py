"""The unit tier: functions on their own, in this process, with no server to start.

The fixtures that reach PostgreSQL, Redis or a served app (tests/conftest.py) all stand on
``service_urls``; a unit test that asks for any of them is refused at collection, before a
server or a database is started for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_TIER = Path(__file__).parent
SERVICES_FIXTURE = "service_urls"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    needing_services = [
        item.nodeid
        for item in items
        if item.path.is_relative_to(UNIT_TIER)
        and SERVICES_FIXTURE in getattr(item, "fixturenames", ())
    ]
    if needing_services:
        raise pytest.UsageError(
            "unit tests must not need PostgreSQL, Redis or a server; move these to"
            f" tests/integration: {', '.join(needing_services)}"
        )
