"""What the stories about an application's workflows share: a viewer, and a family of
workflows in a real system database of either kind."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from stepchange.models import Application
from tests.conftest import make_user
from tests.workflows.family_data import family_database


@pytest.fixture
def vera(system_databases: None) -> User:
    return make_user(username="vera", role="viewer")


@pytest.fixture(params=["sqlite", "postgres"])
def family(
    request: pytest.FixtureRequest,
    vera: User,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> Iterator[Application]:
    yield from family_database(request.param, sdk_fixtures, tmp_path)
