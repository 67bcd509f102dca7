"""The steps the real-schedule stories of both SDKs share (test_schedules.py and
test_schedules_typescript.py): StepChange lists, pauses, resumes, triggers and refuses to
backfill a schedule, each checked in the system database; then the runs it started are
waited for, and the actions read back from the audit log."""

from typing import Any

from tests.e2e.servers import StepChange, SystemDatabase, eventually

# Once a year, at a moment no test run reaches: every run here is one StepChange asked for.
YEARLY = "0 0 1 1 *"


def schedule_status(db: SystemDatabase, name: str) -> str:
    [row] = db.rows("SELECT status FROM workflow_schedules WHERE schedule_name = %s", name)
    return str(row["status"])


def schedule_runs(db: SystemDatabase, name: str) -> list[dict[str, Any]]:
    return db.rows(
        "SELECT workflow_uuid, status, output FROM workflow_status WHERE schedule_name = %s"
        " ORDER BY workflow_uuid",
        name,
    )


def steer(stepchange: StepChange, app: str, db: SystemDatabase, name: str) -> str:
    """The schedule `name` (YEARLY, workflow `tick`, made by the SDK's own client) listed
    through the executor, paused, resumed and triggered, and a backfill of three days in
    which it never fires refused: the triggered run's workflow id."""
    base = f"/apps/{app}/schedules/{name}"
    status, listing = stepchange.api("GET", f"/apps/{app}/schedules?name_prefix=yearly-")
    assert status == 200, listing
    [shown] = listing["items"]
    assert (shown["name"], shown["workflow_name"], shown["cron"]) == (name, "tick", YEARLY)
    assert shown["status"] == "ACTIVE"
    assert shown["next_fire_times"][0].endswith("-01-01T00:00:00Z")
    assert listing["source"] == "executor"

    status, paused = stepchange.api("POST", f"{base}/pause", {"reason": "e2e"})
    assert status == 200, paused
    assert schedule_status(db, name) == "PAUSED"
    status, resumed = stepchange.api("POST", f"{base}/resume")
    assert status == 200, resumed
    assert schedule_status(db, name) == "ACTIVE"

    status, triggered = stepchange.api("POST", f"{base}/trigger")
    assert status == 200, triggered
    [started] = triggered["workflow_ids"]
    assert started.startswith(f"sched-{name}-trigger-")

    # Once a year never fires inside three days: refused, nothing sent.
    window = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-04T00:00:00Z"}
    status, refused = stepchange.api("POST", f"{base}/backfill", window)
    assert status == 400, refused
    assert "does not fire between" in refused["detail"]
    return str(started)


def runs_succeeded(db: SystemDatabase, name: str, count: int) -> list[dict[str, Any]]:
    """The schedule's `count` runs, once every one of them has succeeded."""

    def all_done() -> list[dict[str, Any]] | None:
        runs = schedule_runs(db, name)
        done = len(runs) == count and {r["status"] for r in runs} == {"SUCCESS"}
        return runs if done else None

    return list(eventually(all_done, timeout=60, what=f"the {count} scheduled runs to succeed"))


def audited(stepchange: StepChange, app: str, name: str) -> list[tuple[str, str]]:
    """The schedule's audit records, as sorted (action, result) pairs."""
    status, audit = stepchange.api("GET", f"/audit?app={app}&target={name}")
    assert status == 200, audit
    return sorted((item["action"], item["result"]) for item in audit["items"])
