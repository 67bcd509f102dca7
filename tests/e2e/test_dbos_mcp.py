"""dbos-mcp (0.8.0, DBOS's own MCP server for Conductor), unchanged, against a live
StepChange: its client pointed here by its module constant for the Conductor URL and its
credentials file (a StepChange API token and an organisation) in a home of the test's
own, and every tool it offers called on real dbos==3.2.0 executors, each answer checked
against the application's system database. The story counts the tools it exercised out
of those offered and prints the ones left out, with why."""

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Executor, StepChange, SystemDatabase, eventually

pytestmark = pytest.mark.e2e
mcp_server = pytest.importorskip("dbos_mcp.server")
mcp_client = pytest.importorskip("dbos_mcp.client")

ORG = "acme"
YEARLY = "0 0 1 1 *"
LEFT_OUT = {
    "login": "starts DBOS Cloud's Auth0 device login (login.dbos.dev); StepChange's "
    "credentials are its own API tokens, written to the credentials file",
    "login_complete": "finishes that Auth0 login: same reason",
}


@pytest.fixture(scope="module")
def stepchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepChange]:
    """StepChange answering for one organisation only, as a deployment would name it."""
    server = StepChange(
        tmp_path_factory.mktemp("stepchange"), env={"CONDUCTOR_API_ORGS": ORG}
    ).start()
    yield server
    server.stop()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Tools:
    """dbos-mcp's tools, called as an MCP client calls them."""

    def __init__(self) -> None:
        self.called: set[str] = set()

    def offered(self) -> list[str]:
        return [tool.name for tool in asyncio.run(mcp_server.mcp.list_tools())]

    def __call__(self, name: str, **arguments: Any) -> Any:
        result = asyncio.run(mcp_server.mcp.call_tool(name, arguments))
        assert not result.is_error, result
        self.called.add(name)
        return result.structured_content


def log_in(home: Path, monkeypatch: pytest.MonkeyPatch, server: StepChange, token: str) -> None:
    """What `login_complete` would leave behind, with a StepChange token: the credentials
    file under a home of the test's own, and the client's Conductor URL pointed here."""
    monkeypatch.setenv("HOME", str(home))
    folder = home / ".dbos-mcp"
    folder.mkdir(parents=True, exist_ok=True)
    credentials = folder / "credentials"
    credentials.write_text(
        json.dumps({"token": token, "userName": "e2e-admin", "organization": ORG})
    )
    # The client read Path.home() when it was imported: its paths follow HOME here.
    monkeypatch.setattr(mcp_client, "CREDENTIALS_DIR", folder)
    monkeypatch.setattr(mcp_client, "CREDENTIALS_PATH", credentials)
    monkeypatch.setattr(mcp_client, "CONDUCTOR_URL", f"{server.url}/conductor/v2")


def create_schedule(url: str, app: str, name: str) -> None:
    from dbos import DBOSClient

    client = DBOSClient(system_database_url=url)
    try:
        client.create_schedule(
            schedule_name=name,
            workflow_name="tick",
            schedule=YEARLY,
            context={"team": "billing"},
            application_name=app,
        )
    finally:
        client.destroy()


def test_every_dbos_mcp_tool_answers_from_stepchange(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    executors: Callable[..., Executor],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"sqlite:///{tmp_path / 'system.sqlite'}"
    app, key = new_app("mcp", system_database_url=url)
    v1 = executors("python", app=app, key=key, system_database_url=url, version="v1")
    stepchange.wait_executors(app, 1)
    db = SystemDatabase(url)
    log_in(tmp_path / "home", monkeypatch, stepchange, stepchange.token())
    tools = Tools()

    def status_of(workflow_id: str, *statuses: str) -> str:
        return str(
            eventually(
                lambda: (found := db.status(workflow_id)) in statuses and found,
                timeout=30,
                what=f"{workflow_id} to be one of {statuses}",
            )
        )

    # Workflows of every kind, run by the real executor.
    ok, failed = new_id("greet"), new_id("fail")
    v1.get(f"/?name=ada&workflow_id={ok}")
    v1.get(f"/?name=fail-bob&workflow_id={failed}")
    approval = new_id("approval")
    v1.get(f"/approval?workflow_id={approval}&timeout=120")
    status_of(approval, "PENDING")
    v1.get(f"/send?workflow_id={approval}&message=approved")
    status_of(approval, "SUCCESS")
    slow = [new_id("slow") for _ in range(3)]
    for workflow_id in slow:
        v1.get(f"/slow?seconds=300&workflow_id={workflow_id}")
        status_of(workflow_id, "PENDING")
    status_of(ok, "SUCCESS")
    status_of(failed, "ERROR")

    # Applications and executors.
    listed = tools("list_applications")
    [mine] = [a for a in listed["applications"] if a["name"] == app]
    assert (mine["status"], mine["orgId"]) == ("AVAILABLE", ORG)
    found = tools("list_executors", application_name=app)
    [executor] = found["executors"]
    assert (executor["status"], executor["language"], executor["appVersion"]) == (
        "HEALTHY",
        "python",
        "v1",
    )

    # Reads.
    found = tools(
        "list_workflows",
        application_name=app,
        workflow_name="greet",
        status=["SUCCESS", "ERROR"],
        load_output=True,
        sort_desc=True,
    )
    by_id = {w["workflowId"]: w for w in found["workflows"]}
    assert {ok, failed} <= set(by_id)
    assert "HELLO ADA" in by_id[ok]["output"]
    assert "bad input fail-bob" in by_id[failed]["error"]
    found = tools("list_workflows", application_name=app, workflow_uuids=[ok], limit=1)
    assert [w["workflowId"] for w in found["workflows"]] == [ok]

    workflow = tools("get_workflow", application_name=app, workflow_id=ok)
    assert (workflow["workflowId"], workflow["status"], workflow["appVersion"]) == (
        ok,
        "SUCCESS",
        "v1",
    )
    assert "ada" in workflow["input"]

    steps = tools("list_steps", application_name=app, workflow_id=ok)["steps"]
    recorded = db.steps(ok)
    assert [s["stepId"] for s in steps] == [r["function_id"] for r in recorded]
    assert {"fetch", "shout"} <= {s["stepName"] for s in steps}
    assert any(s.get("childWorkflowId") for s in steps)
    second = tools("list_steps", application_name=app, workflow_id=ok, limit=1, offset=1)
    assert [s["stepId"] for s in second["steps"]] == [recorded[1]["function_id"]]

    events = tools("get_workflow_events", application_name=app, workflow_id=ok)["events"]
    assert {e["key"]: e["value"] for e in events} == {"stage": "done"}
    notes = tools("get_workflow_notifications", application_name=app, workflow_id=approval)
    [note] = notes["notifications"]
    assert "approved" in note["message"]

    aggregates = tools(
        "get_workflow_aggregates", application_name=app, group_by_status=True, select_count=True
    )["aggregates"]
    counts = {row["group"]["status"]: row["count"] for row in aggregates}
    [row] = db.rows("SELECT COUNT(*) AS n FROM workflow_status WHERE status = 'SUCCESS'")
    assert counts["SUCCESS"] == row["n"]
    assert counts["PENDING"] == 3

    # Actions on one workflow, each checked in the system database.
    tools("cancel_workflow", application_name=app, workflow_id=slow[0])
    assert db.status(slow[0]) == "CANCELLED"
    tools("resume_workflow", application_name=app, workflow_id=slow[0])
    status_of(slow[0], "ENQUEUED", "PENDING")
    forked = tools("fork_workflow", application_name=app, workflow_id=ok, start_step=2)
    assert (db.workflow(forked["workflow_id"]) or {}).get("forked_from") == ok
    status_of(forked["workflow_id"], "SUCCESS")
    tools("delete_workflow", application_name=app, workflow_id=forked["workflow_id"])
    assert db.workflow(forked["workflow_id"]) is None

    # Bulk actions: answered once StepChange's bulk job has finished.
    tools("bulk_cancel_workflows", application_name=app, workflow_ids=slow)
    assert {db.status(w) for w in slow} == {"CANCELLED"}
    tools("bulk_resume_workflows", application_name=app, workflow_ids=slow[1:])
    for workflow_id in slow[1:]:
        status_of(workflow_id, "ENQUEUED", "PENDING")
    new_ids = tools(
        "fork_from_failure", application_name=app, workflow_ids=[failed], from_last_failure=True
    )["workflow_ids"]
    [fork] = new_ids
    assert (db.workflow(fork) or {}).get("forked_from") == failed
    status_of(fork, "ERROR")
    tools("bulk_delete_workflows", application_name=app, workflow_ids=[fork, failed])
    assert (db.workflow(fork), db.workflow(failed)) == (None, None)

    # Schedules, made by DBOS's own client.
    name = new_id("yearly")
    create_schedule(url, app, name)
    schedules = tools("list_schedules", application_name=app, schedule_name_prefix="yearly-")
    [schedule] = schedules["schedules"]
    assert (schedule["scheduleName"], schedule["cronExpression"]) == (name, YEARLY)
    one = tools("get_schedule", application_name=app, schedule_name=name)
    assert (one["workflowName"], one["status"]) == ("tick", "ACTIVE")

    def schedule_status() -> str:
        [row] = db.rows("SELECT status FROM workflow_schedules WHERE schedule_name = %s", name)
        return str(row["status"])

    tools("pause_schedule", application_name=app, schedule_name=name)
    assert schedule_status() == "PAUSED"
    tools("resume_schedule", application_name=app, schedule_name=name)
    assert schedule_status() == "ACTIVE"
    triggered = tools("trigger_schedule", application_name=app, schedule_name=name)
    assert triggered["workflow_id"].startswith(f"sched-{name}-trigger-")
    status_of(triggered["workflow_id"], "SUCCESS")

    # Versions: a second executor registers v2, the latest; v1 is made the latest again.
    executors("python", app=app, key=key, system_database_url=url, version="v2")
    stepchange.wait_executors(app, 2)

    def stamps() -> dict[str, int]:
        rows = db.rows("SELECT version_name, version_timestamp FROM application_versions")
        return {row["version_name"]: int(row["version_timestamp"]) for row in rows}

    eventually(lambda: len(stamps()) == 2, what="both versions registered")
    versions = tools("list_application_versions", application_name=app)["versions"]
    assert [v["versionName"] for v in versions] == ["v2", "v1"]
    tools("set_latest_application_version", application_name=app, version_name="v1")
    assert stamps()["v1"] > stamps()["v2"]

    # Everything dbos-mcp did is in the audit log, as StepChange's admin.
    status, audit = stepchange.api("GET", f"/audit?app={app}&limit=200")
    assert status == 200, audit
    actions = {(r["action"], r["result"]) for r in audit["items"]}
    for done in [
        "workflow.cancel",
        "workflow.resume",
        "workflow.fork",
        "workflow.delete",
        "workflow.fork_from_failure",
        "bulk.create",
        "schedule.pause",
        "schedule.trigger",
        "application.version.set_latest",
    ]:
        assert (done, "ok") in actions, done

    offered = tools.offered()
    left_out = sorted(set(offered) - tools.called)
    print(f"\ndbos-mcp tools exercised: {len(tools.called)} of {len(offered)}")
    for tool in left_out:
        print(f"  left out: {tool}: {LEFT_OUT.get(tool, 'NO REASON GIVEN')}")
    assert left_out == sorted(LEFT_OUT)


def test_dbos_mcp_is_refused_what_its_token_may_not_do(
    stepchange: StepChange,
    new_app: Callable[..., tuple[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx
    from mcp.server.mcpserver.exceptions import UnexpectedToolError

    app, _ = new_app("mcp-refusals")
    stepchange.user("e2e-viewer", "viewer")
    viewer_token = stepchange.manage("create_api_token", "e2e-viewer").strip()
    log_in(tmp_path / "home", monkeypatch, stepchange, viewer_token)

    def refused(name: str, **arguments: Any) -> httpx.Response:
        with pytest.raises(UnexpectedToolError) as caught:
            asyncio.run(mcp_server.mcp.call_tool(name, arguments))
        cause = caught.value.__cause__
        assert isinstance(cause, httpx.HTTPStatusError), caught.value
        return cause.response

    answer = refused("cancel_workflow", application_name=app, workflow_id="wf-1")
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "Your role does not allow this."
    assert refused("list_executors", application_name="ghost").status_code == 404

    log_in(tmp_path / "home", monkeypatch, stepchange, "sc_not-a-real-token")
    assert refused("list_applications").status_code == 401

    # An organisation this StepChange does not answer for.
    credentials = tmp_path / "home" / ".dbos-mcp" / "credentials"
    credentials.write_text(json.dumps({"token": viewer_token, "organization": "other"}))
    answer = refused("list_applications")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "No organization named 'other' here."

    status, audit = stepchange.api("GET", f"/audit?app={app}&action=access.denied")
    assert status == 200, audit
    assert [(r["actor_name"], r["result"]) for r in audit["items"]] == [("e2e-viewer", "denied")]
