"""End-to-end fixtures: a StepChange server per module, throwaway Postgres databases,
and real executors that are always stopped."""

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, PostgresDatabases, StepChange

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def databases() -> Iterator[PostgresDatabases]:
    made = PostgresDatabases()
    yield made
    made.drop_all()


@pytest.fixture(scope="module")
def stepchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepChange]:
    server = StepChange(tmp_path_factory.mktemp("stepchange")).start()
    yield server
    server.stop()


@pytest.fixture
def new_app(stepchange: StepChange) -> Callable[..., tuple[str, str]]:
    """Register a fresh application; returns its name and executor key."""

    def register(prefix: str = "e2e", **options: Any) -> tuple[str, str]:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        key = f"key-{uuid.uuid4().hex}"
        flags = [f"--{option.replace('_', '-')}={value}" for option, value in options.items()]
        stepchange.manage("register_app", name, "--key", key, *flags)
        return name, key

    return register


@pytest.fixture
def executors(stepchange: StepChange, tmp_path: Path) -> Iterator[Callable[..., Executor]]:
    """Start real executors against `stepchange`; all are stopped after the test."""
    started: list[Executor] = []

    def start(
        language: str,
        *,
        app: str,
        key: str,
        system_database_url: str,
        version: str = "v1",
        server: StepChange | None = None,
        **env: str,
    ) -> Executor:
        executor = Executor(
            language,
            conductor_url=(server or stepchange).ws_url,
            app=app,
            key=key,
            system_database_url=system_database_url,
            version=version,
            log_dir=tmp_path,
            extra_env=env,
        )
        started.append(executor)
        return executor

    yield start
    for executor in started:
        executor.stop()
