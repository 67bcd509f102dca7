"""Two Daphne processes behind no load balancer at all: a request that lands on one
process reaches the executor whose socket the other process holds, through Redis."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.servers import Executor, PostgresDatabases, StepChange

pytestmark = pytest.mark.e2e
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


def require_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is unreachable and CI=true: {exc}")
        pytest.skip(f"Redis is unreachable: {exc}")


@pytest.fixture
def two_processes(tmp_path: Path, databases: PostgresDatabases) -> Iterator[list[StepChange]]:
    require_redis()
    shared = {"DATABASE_URL": databases.new("sc_scale"), "REDIS_URL": REDIS_URL}
    first = StepChange(tmp_path / "one", env=shared, name="one")
    second = StepChange(tmp_path / "two", env=shared, name="two")
    for server, migrate in ((first, True), (second, False)):
        server.data_dir.mkdir()
        server.start(migrate=migrate)
    yield [first, second]
    for server in (first, second):
        server.stop()


def test_a_request_to_one_process_reaches_the_executor_held_by_the_other(
    two_processes: list[StepChange],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> None:
    first, second = two_processes
    first.manage("register_app", "scaled", "--key", "scaled-key-0123456789abcdef")
    executor = executors(
        "python",
        app="scaled",
        key="scaled-key-0123456789abcdef",
        system_database_url=databases.new("sc_scale_sys"),
        server=first,
    )
    [held] = second.wait_executors("scaled", 1)
    executor.get("/?name=redis&workflow_id=wf-redis")
    status, workflow = second.api("GET", "/apps/scaled/workflows/wf-redis")
    assert status == 200, workflow
    assert workflow["status"] == "SUCCESS"
    assert workflow["executor_id"] == held["executor_id"]
    # And the other way round, the request log shows both answered through one executor.
    status, steps = first.api("GET", "/apps/scaled/workflows/wf-redis/steps")
    assert status == 200, steps
    assert steps["items"][0]["function_name"] == "fetch"
