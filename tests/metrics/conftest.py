from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepchange.models import Application
from tests.metrics.data import SystemDatabase, metrics_database


@pytest.fixture(params=["sqlite", "postgres"])
def shop(
    request: pytest.FixtureRequest,
    system_databases: None,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
    settings: Any,
) -> Iterator[tuple[Application, SystemDatabase]]:
    # A first roll-up reaches an hour back: older rows are history it does not count.
    settings.METRICS_BACKFILL_HOURS = 1
    settings.METRICS_SETTLE_SECONDS = 10
    yield from metrics_database(request.param, sdk_fixtures, tmp_path)
