"""A real dynamic schedule of a real @dbos-inc/dbos-sdk 5.0.2 executor, steered through
StepChange: paused, resumed, triggered and backfilled, each checked in the system database,
with the runs it started appearing and running to their end.

The TypeScript twin of test_schedules.py, sharing its steps (tests/e2e/schedules.py).
Where the TS SDK answers differently (its run ids carry milliseconds and a `Z`, its
context is Node's rendering, it pauses a schedule that does not exist without complaint),
the test pins what an operator sees.
"""

import subprocess
import uuid
from collections.abc import Callable

import pytest

from tests.e2e.schedules import YEARLY, audited, runs_succeeded, steer
from tests.e2e.servers import ROOT, Executor, PostgresDatabases, StepChange, SystemDatabase

pytestmark = pytest.mark.e2e

# Made as a TypeScript application makes one: by the SDK's own client.
CREATE_SCHEDULE = """
const { DBOSClient } = require('@dbos-inc/dbos-sdk');
(async () => {
  const [url, app, name, cron] = process.argv.slice(1);
  const client = await DBOSClient.create({ systemDatabaseUrl: url, applicationName: app });
  try {
    await client.createSchedule({
      scheduleName: name, workflowName: 'tick', schedule: cron, context: { team: 'billing' },
    });
  } finally {
    await client.destroy();
  }
})().catch((err) => { console.error(err); process.exit(1); });
"""


@pytest.fixture
def deployment(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    databases: PostgresDatabases,
) -> tuple[str, SystemDatabase]:
    app, key = new_app("tsched")
    url = databases.new("sc_tsched")
    executors("typescript", app=app, key=key, system_database_url=url, version="tsv1")
    stepchange.wait_executors(app, 1)
    return app, SystemDatabase(url)


def create_schedule(url: str, app: str, name: str, *, cron: str = YEARLY) -> None:
    subprocess.run(
        ["node", "-e", CREATE_SCHEDULE, url, app, name, cron],
        cwd=ROOT / "samples/typescript",
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_a_real_typescript_schedule_is_paused_resumed_triggered_and_backfilled(
    stepchange: StepChange, deployment: tuple[str, SystemDatabase]
) -> None:
    app, db = deployment
    name = f"yearly-{uuid.uuid4().hex[:6]}"
    create_schedule(db.url, app, name)
    base = f"/apps/{app}/schedules/{name}"
    started = steer(stepchange, app, db, name)
    # The TS SDK renders a context with Node's inspect, not as JSON.
    status, one = stepchange.api("GET", base)
    assert status == 200, one
    assert one["context"] == "{ team: 'billing' }"
    assert one["application_name"] == app

    # Four years: the TS executor would test every second of them (minutes, answering
    # nothing else). Refused before it is sent, in the preview as in the action.
    years = "start=2020-06-01T00:00:00Z&end=2024-06-01T00:00:00Z"
    status, preview = stepchange.api("GET", f"{base}/backfill?{years}")
    assert status == 400, preview
    assert "TypeScript executor (@dbos-inc/dbos-sdk 5.0.2)" in preview["detail"]
    wide = {"start": "2020-06-01T00:00:00Z", "end": "2024-06-01T00:00:00Z"}
    status, refused = stepchange.api("POST", f"{base}/backfill", wide)
    assert (status, refused["detail"]) == (400, preview["detail"])

    # A range around the run wanted: one run, its id in the TS SDK's own spelling.
    around = {"start": "2020-12-20T00:00:00Z", "end": "2021-01-10T00:00:00Z"}
    status, backfilled = stepchange.api("POST", f"{base}/backfill", around)
    assert status == 200, backfilled
    assert backfilled["workflow_ids"] == [f"sched-{name}-2021-01-01T00:00:00.000Z"]

    runs = runs_succeeded(db, name, 2)
    assert {r["workflow_uuid"] for r in runs} == {started, *backfilled["workflow_ids"]}
    code, run = stepchange.api("GET", f"/apps/{app}/workflows/{backfilled['workflow_ids'][0]}")
    assert code == 200, run
    assert "tick at 2021-01-01T00:00:00.000Z" in run["output"]
    assert "billing" in run["output"]

    assert audited(stepchange, app, name) == [
        ("schedule.backfill", "failed"),
        ("schedule.backfill", "failed"),
        ("schedule.backfill", "ok"),
        ("schedule.pause", "ok"),
        ("schedule.resume", "ok"),
        ("schedule.trigger", "ok"),
    ]


def test_an_unknown_schedule_is_a_404_from_a_real_typescript_executor(
    stepchange: StepChange, deployment: tuple[str, SystemDatabase]
) -> None:
    """The TS SDK would pause a schedule that does not exist and answer success (an UPDATE
    of no rows); StepChange asks `get_schedule` first, so the operator hears it is unknown."""
    app, _ = deployment
    for action in ("pause", "trigger"):
        status, body = stepchange.api("POST", f"/apps/{app}/schedules/no-such-schedule/{action}")
        assert status == 404, body
        assert body["detail"] == f"No schedule no-such-schedule in {app}."
