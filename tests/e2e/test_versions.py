"""Application versions with real dbos 3.2.0 executors: two versions of one application on
one SQLite system database, the latest set through StepChange and seen in DBOS's table and
in what the executors do (an unpinned fork runs on the latest version's executor)."""

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, StepChange, SystemDatabase, eventually

pytestmark = pytest.mark.e2e


def test_the_latest_version_set_through_stepchange_is_the_one_dbos_runs_unpinned_work_on(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'versions.sqlite'}"
    app, key = new_app("versions", system_database_url=url)
    old = executors("python", app=app, key=key, system_database_url=url, version="v1")
    stepchange.wait_executors(app, 1)
    executors("python", app=app, key=key, system_database_url=url, version="v2")
    by_version = {
        e["application_version"]: e["executor_id"] for e in stepchange.wait_executors(app, 2)
    }
    db = SystemDatabase(url)

    def stamps() -> dict[str, int]:
        rows = db.rows("SELECT version_name, version_timestamp FROM application_versions")
        return {row["version_name"]: int(row["version_timestamp"]) for row in rows}

    # v2 registered after v1: DBOS holds it as the latest, and so does the Versions page.
    eventually(lambda: len(stamps()) == 2, what="both versions registered")
    status, listed = stepchange.api("GET", f"/apps/{app}/versions")
    assert status == 200, listed
    assert listed["latest"] == "v2"
    assert stamps()["v2"] > stamps()["v1"]

    status, done = stepchange.api(
        "POST", f"/apps/{app}/versions/latest", {"version_name": "v1", "reason": "roll back"}
    )
    assert status == 200, done
    assert done["previous_latest"] == "v2"
    assert stamps()["v1"] > stamps()["v2"]
    status, listed = stepchange.api("GET", f"/apps/{app}/versions")
    assert listed["latest"] == "v1"
    status, audit = stepchange.api("GET", f"/audit?app={app}&action=application.version.set_latest")
    assert [(r["result"], r["target"]) for r in audit["items"]] == [("ok", "v1")]

    # An unpinned fork (no version) is dequeued by an executor of the latest version: v1's.
    source = f"greet-{uuid.uuid4().hex[:8]}"
    old.get(f"/?name=ada&workflow_id={source}")
    status, forked = stepchange.api(
        "POST", f"/apps/{app}/workflows/{source}/fork", {"start_step": 1, "reason": "e2e"}
    )
    assert status == 200, forked

    def finished() -> dict[str, Any] | None:
        row = db.workflow(forked["new_workflow_id"])
        return row if row and row["status"] == "SUCCESS" else None

    row = eventually(finished, timeout=30, what="the unpinned fork to finish")
    assert row["executor_id"] == by_version["v1"]
    assert row["application_version"] == "v1"

    # An unknown version is refused by StepChange with the versions it knows; nothing moves.
    before = stamps()
    status, refused = stepchange.api("POST", f"/apps/{app}/versions/latest", {"version_name": "v9"})
    assert status == 404
    assert refused["detail"] == f"{app} has no version 'v9': the versions are v1, v2."
    assert stamps() == before
