"""Stories about a database-managed application whose admin gave it a liveness URL: the
executors seen in its PENDING workflows are probed there (a small HTTP server of the test
answers for them), and one that fails for the grace period has its PENDING workflows
re-enqueued in the system database (SQLite and Postgres), once, by one StepChange process,
with poison suspects held for an operator."""

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from conductor import liveness
from conductor.models import DatabaseExecutor, Executor, PoisonWorkflow, RecoveryAttempt
from conductor.recovery import AUTOMATIC
from forks import native
from stepchange.models import (
    LIVENESS_HTTP_ONLY,
    LIVENESS_NO_PLACEHOLDER,
    LIVENESS_OTHER_BRACES,
    LIVENESS_USERINFO,
    LIVENESS_WHERE,
    Application,
    AuditRecord,
    liveness_url,
)
from tests.conftest import make_user, signed_in
from tests.workflows.family_data import family_database
from workflows import systemdb

GONE = "gone-executor"
RUNNER = "live-runner"
CHILD = "live-runner-child"
PROVEN = "answered-before"


class Health:
    """A local HTTP server answering /health/<executor id> with the status the test sets
    (200 unless told); "hang" answers nothing for 30 s; a redirect goes where it says."""

    def __init__(self) -> None:
        self.status: dict[str, int | str] = {}
        self.hits: list[str] = []
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                health.hits.append(self.path)
                answer = health.status.get(self.path.rsplit("/", 1)[-1], 200)
                if answer == "hang":
                    time.sleep(30)
                    return
                if isinstance(answer, str):
                    self.send_response(302)
                    self.send_header("Location", answer)
                    self.end_headers()
                    return
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.template = f"http://127.0.0.1:{self.port}/health/{{executor_id}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[Health]:
    server = Health()
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgres"])
def family(
    request: pytest.FixtureRequest,
    system_databases: None,
    sdk_fixtures: dict[str, dict[str, Any]],
    tmp_path: Path,
    health: Health,
    settings: Any,
) -> Iterator[Application]:
    """The family of tests/workflows plus two PENDING workflows left by GONE, with the
    test's health server as the liveness source and a grace period of a minute."""
    settings.LIVENESS_TIMEOUT_SECONDS = 1
    for application in family_database(request.param, sdk_fixtures, tmp_path):
        application.liveness_url_template = health.template
        application.recovery_grace_seconds = 60
        application.save()
        for workflow_id, parent in [(RUNNER, None), (CHILD, RUNNER)]:
            write(
                application,
                "INSERT INTO workflow_status (workflow_uuid, status, name, queue_name,"
                " parent_workflow_id, created_at, updated_at, executor_id)"
                " VALUES (%s, 'PENDING', 'ship', 'shipping', %s, 1, 1, %s)",
                [workflow_id, parent, GONE],
            )
        # The URL has answered for an executor of the application before: it reaches them.
        DatabaseExecutor.objects.create(
            application=application, executor_id=PROVEN, answered_at=timezone.now()
        )
        yield application


def write(application: Application, sql: str, params: list[Any]) -> None:
    with connections[systemdb.alias_for(application)].cursor() as cursor:
        cursor.execute(sql, params)


def status(application: Application, workflow_id: str) -> tuple[Any, ...]:
    with connections[systemdb.alias_for(application)].cursor() as cursor:
        cursor.execute(
            "SELECT status, queue_name, executor_id FROM workflow_status WHERE workflow_uuid = %s",
            [workflow_id],
        )
        return tuple(cursor.fetchone())


def probe_pass() -> list[RecoveryAttempt]:
    return async_to_sync(liveness.probe_all)()


def gone_for(seconds: int, executor_id: str = GONE) -> None:
    """As if the executor's URL had been failing this long."""
    DatabaseExecutor.objects.filter(executor_id=executor_id).update(
        failing_since=timezone.now() - timedelta(seconds=seconds)
    )


def the(executor_id: str = GONE) -> DatabaseExecutor:
    return DatabaseExecutor.objects.get(executor_id=executor_id)


# The probe itself


def probe(url: str, seconds: float = 1) -> liveness.Answer:
    return async_to_sync(liveness.probe)(url, seconds=seconds)


def test_an_executor_is_alive_while_its_url_answers_2xx(health: Health) -> None:
    health.status.update({"ok": 204, "sick": 503})
    assert probe(liveness_url(health.template, "ok")).alive
    sick = probe(liveness_url(health.template, "sick"))
    assert (sick.alive, sick.detail) == (False, "answered HTTP 503")


def test_a_url_that_hangs_fails_at_the_timeout(health: Health) -> None:
    health.status["slow"] = "hang"
    started = time.monotonic()
    answer = probe(liveness_url(health.template, "slow"), seconds=0.5)
    assert time.monotonic() - started < 5
    assert (answer.alive, answer.detail) == (False, "no answer within 0.5 s")


def test_a_redirect_is_followed_on_the_same_host_only(health: Health) -> None:
    other = Health()
    try:
        health.status["moved"] = f"http://127.0.0.1:{health.port}/health/ok"
        assert probe(liveness_url(health.template, "moved")).alive
        health.status["away"] = f"http://127.0.0.1:{other.port}/health/ok"
        away = probe(liveness_url(health.template, "away"))
        assert not away.alive
        assert "redirected to another host" in away.detail
        assert other.hits == []
    finally:
        other.close()


def test_a_connection_refused_is_a_failure_not_an_error() -> None:
    answer = probe("http://127.0.0.1:9/health")
    assert not answer.alive
    assert answer.probeable


def test_the_executor_id_is_url_quoted_into_the_template() -> None:
    template = "http://{executor_id}.hosts.example:8000/healthz?id={executor_id}"
    assert liveness_url(template, "a/b?c") == (
        "http://a%2Fb%3Fc.hosts.example:8000/healthz?id=a%2Fb%3Fc"
    )
    # A URL StepChange cannot use (here from a template stored before validation) is not
    # a failure of the executor: it is never called gone.
    unusable = probe("http://host:port/healthz")
    assert (unusable.alive, unusable.probeable) == (False, False)


# Setting the liveness URL


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("http://host:8000/healthz", LIVENESS_NO_PLACEHOLDER),
        ("ftp://{executor_id}/healthz", LIVENESS_HTTP_ONLY),
        ("{executor_id}:8000/healthz", LIVENESS_HTTP_ONLY),
        ("http://{executor_id}:{port}/healthz", LIVENESS_OTHER_BRACES),
        ("http://{executor_id}:99999999/", LIVENESS_HTTP_ONLY),
        # One host would answer for every executor.
        ("http://{executor_id}@monitor:8000/healthz", LIVENESS_USERINFO),
        ("http://monitor:8000/healthz#{executor_id}", LIVENESS_WHERE),
        ("http://ops:secret@{executor_id}:8000/healthz", LIVENESS_USERINFO),
    ],
)
def test_an_admin_is_told_what_is_wrong_with_a_bad_template(
    db: None, template: str, message: str
) -> None:
    application = Application.objects.create(
        name="shop", liveness_url_template="http://{executor_id}:1/ok"
    )
    admin = signed_in(make_user(username="ada", role="admin"))
    answer = admin.put(
        "/api/v1/apps/shop/liveness", {"liveness_url_template": template}, "application/json"
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["detail"] == message
    application.refresh_from_db()
    assert application.liveness_url_template == "http://{executor_id}:1/ok"
    assert not AuditRecord.objects.filter(action="application.update").exists()


def test_an_admin_sets_and_unsets_the_liveness_url_audited(db: None) -> None:
    Application.objects.create(name="shop")
    admin = signed_in(make_user(username="ada", role="admin"))
    template = "https://{executor_id}.shop.internal/healthz"
    answer = admin.put(
        "/api/v1/apps/shop/liveness", {"liveness_url_template": template}, "application/json"
    )
    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "liveness_url_template": template,
        "recovery_grace_seconds": 60,
        "executors": [],
    }
    assert admin.get("/api/v1/apps/shop/liveness").json()["liveness_url_template"] == template
    off = admin.put("/api/v1/apps/shop/liveness", {"liveness_url_template": ""}, "application/json")
    assert off.json()["liveness_url_template"] == ""
    records = AuditRecord.objects.filter(action="application.update").order_by("id")
    assert [r.parameters["after"] for r in records] == [
        {"liveness_url_template": template},
        {"liveness_url_template": ""},
    ]
    assert records[1].parameters["before"] == {"liveness_url_template": template}


def test_an_operator_may_not_set_the_liveness_url(db: None) -> None:
    Application.objects.create(name="shop")
    operator = signed_in(make_user(username="otto", role="operator"))
    answer = operator.put(
        "/api/v1/apps/shop/liveness",
        {"liveness_url_template": "http://{executor_id}/"},
        "application/json",
    )
    assert answer.status_code == 403
    assert Application.objects.get().liveness_url_template == ""


# Automatic recovery


def test_a_gone_executor_is_recovered_once_past_the_grace_period(
    family: Application, health: Health
) -> None:
    health.status[GONE] = 503
    assert probe_pass() == []
    assert (the().state, the().probe_detail) == ("failing", "answered HTTP 503")
    assert status(family, RUNNER)[0] == "PENDING"
    assert f"/health/{GONE}" in health.hits
    gone_for(61)
    [attempt] = probe_pass()
    assert (attempt.outcome, attempt.path, attempt.requested_by) == ("sent", "database", AUTOMATIC)
    assert sorted(attempt.pending_workflow_ids) == sorted([RUNNER, CHILD])
    assert status(family, RUNNER)[:2] == ("ENQUEUED", "shipping")
    assert status(family, CHILD)[:2] == ("ENQUEUED", "shipping")
    assert the().state == "recovered"
    record = AuditRecord.objects.get(action="executor.recovery")
    assert (record.actor_name, record.result) == (AUTOMATIC, "ok")
    assert record.parameters["path"] == "database"
    assert "answered HTTP 503" in record.detail
    # Nothing is left pending on it: it is not probed again, nor recovered again.
    health.hits.clear()
    assert probe_pass() == []
    assert health.hits == []


def test_an_executor_back_under_its_id_after_a_recovery_has_a_grace_period_again(
    family: Application, health: Health
) -> None:
    # Recovered once; later it comes back under the same id (a fixed DBOS__VMID), takes new
    # work, and its first probe fails while it starts: not recovered on that probe.
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    [attempt] = probe_pass()
    assert attempt.outcome == "sent"
    write(family, "UPDATE workflow_status SET status = 'SUCCESS' WHERE executor_id = %s", [GONE])
    assert probe_pass() == []
    write(
        family,
        "INSERT INTO workflow_status (workflow_uuid, status, name, queue_name, created_at,"
        " updated_at, executor_id) VALUES ('back-again', 'PENDING', 'ship', 'shipping', 2, 2, %s)",
        [GONE],
    )
    DatabaseExecutor.objects.filter(executor_id=GONE).update(
        recovered_at=timezone.now() - timedelta(hours=1)
    )
    assert probe_pass() == []
    assert status(family, "back-again")[0] == "PENDING"
    failing_since = the().failing_since
    assert failing_since is not None
    assert failing_since > timezone.now() - timedelta(seconds=30)
    gone_for(61)
    [again] = probe_pass()
    assert again.pending_workflow_ids == ["back-again"]


def test_answers_to_a_url_changed_during_the_pass_decide_nothing(
    family: Application, health: Health
) -> None:
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    # The admin sets another URL while a pass is probing the old one.
    stale = Application.objects.get(pk=family.pk)
    Application.objects.filter(pk=family.pk).update(
        liveness_url_template="http://{executor_id}:9/elsewhere"
    )
    answers = {GONE: liveness.Answer(False, "answered HTTP 503")}
    assert liveness._note(stale, answers, {GONE: ""}) == []
    assert status(family, RUNNER)[0] == "PENDING"
    assert not RecoveryAttempt.objects.exists()


def test_an_executor_that_answers_again_within_the_grace_period_is_not_recovered(
    family: Application, health: Health
) -> None:
    health.status[GONE] = 500
    probe_pass()
    gone_for(30)
    health.status[GONE] = 200
    assert probe_pass() == []
    assert (the().state, the().failing_since) == ("alive", None)
    # Failing again starts a new grace period.
    health.status[GONE] = 500
    assert probe_pass() == []
    assert the().state == "failing"
    assert status(family, RUNNER)[0] == "PENDING"
    assert not RecoveryAttempt.objects.exists()


def test_a_hanging_url_counts_as_failing(
    family: Application, health: Health, settings: Any
) -> None:
    settings.LIVENESS_TIMEOUT_SECONDS = 1
    health.status[GONE] = "hang"
    probe_pass()
    assert (the().state, the().probe_detail) == ("failing", "no answer within 1 s")
    gone_for(61)
    [attempt] = probe_pass()
    assert attempt.outcome == "sent"


def test_a_connected_executor_of_that_id_is_not_probed(family: Application, health: Health) -> None:
    Executor.objects.create(application=family, executor_id=GONE)
    probe_pass()
    assert health.hits == []
    assert not DatabaseExecutor.objects.filter(executor_id=GONE).exists()


def test_a_workflow_another_executor_took_up_meanwhile_is_left_alone(
    family: Application, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    real = native._database

    def taken_up_first(application: Application) -> tuple[str, systemdb.Schema]:
        write(
            application,
            "UPDATE workflow_status SET executor_id = 'alive' WHERE workflow_uuid = %s",
            [CHILD],
        )
        return real(application)

    monkeypatch.setattr(native, "_database", taken_up_first)
    [attempt] = probe_pass()
    assert attempt.outcome == "sent"
    assert status(family, RUNNER)[0] == "ENQUEUED"
    assert status(family, CHILD) == ("PENDING", "shipping", "alive")
    assert f"taken up since: {CHILD} (PENDING)" in attempt.detail


def test_an_unreachable_system_database_fails_the_attempt_which_is_retried(
    family: Application, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)

    def away(**kwargs: Any) -> native.Written:
        raise systemdb.SystemDatabaseError("The system database is not answering.")

    real = native.native_recover
    monkeypatch.setattr(native, "native_recover", away)
    [failed] = probe_pass()
    assert (failed.outcome, failed.detail) == ("failed", "The system database is not answering.")
    assert the().state == "failed"
    assert status(family, RUNNER)[0] == status(family, CHILD)[0] == "PENDING"
    assert AuditRecord.objects.get(action="executor.recovery").result == "failed"
    monkeypatch.setattr(native, "native_recover", real)
    # Not at once: after RETRY_FAILED_AFTER_SECONDS.
    assert probe_pass() == []
    DatabaseExecutor.objects.update(recovered_at=timezone.now() - timedelta(seconds=31))
    [retried] = probe_pass()
    assert retried.outcome == "sent"
    assert status(family, RUNNER)[0] == status(family, CHILD)[0] == "ENQUEUED"


def test_without_the_system_database_nothing_is_decided(
    family: Application, health: Health, monkeypatch: pytest.MonkeyPatch
) -> None:
    health.status[GONE] = 503

    def away(application: Application) -> list[native.PendingExecutor]:
        raise systemdb.SystemDatabaseError("The system database is not answering.")

    monkeypatch.setattr(native, "pending_executors", away)
    assert probe_pass() == []
    assert health.hits == []
    assert not DatabaseExecutor.objects.filter(executor_id=GONE).exists()


def test_a_poison_suspect_is_held_for_an_operator_and_the_rest_recovered(
    family: Application, health: Health
) -> None:
    # RUNNER was left pending once already, by an executor that died before GONE.
    PoisonWorkflow.objects.create(
        application=family, workflow_id=RUNNER, executors_killed=1, executor_ids=["gone-0"]
    )
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    [attempt] = probe_pass()
    assert attempt.outcome == "held"
    assert f"held, not re-enqueued: poison suspects {RUNNER}" in attempt.detail
    assert status(family, RUNNER)[0] == "PENDING"
    assert status(family, CHILD)[0] == "ENQUEUED"
    assert the().state == "held"
    poison = PoisonWorkflow.objects.get(workflow_id=RUNNER)
    assert (poison.executors_killed, poison.executor_ids) == (2, ["gone-0", GONE])
    record = AuditRecord.objects.get(action="executor.recovery")
    assert record.parameters["held_workflow_ids"] == [RUNNER]
    # Held, not asked again while the suspect waits for an operator.
    DatabaseExecutor.objects.update(recovered_at=timezone.now() - timedelta(seconds=31))
    assert probe_pass() == []
    # The operator says it is not poison: it is recovered at the next pass.
    PoisonWorkflow.objects.filter(workflow_id=RUNNER).update(
        resolved_at=timezone.now(), resolution="dismiss"
    )
    [again] = probe_pass()
    assert again.outcome == "sent"
    assert status(family, RUNNER)[0] == "ENQUEUED"


def test_of_two_processes_only_one_claims_a_gone_executor(
    family: Application, health: Health
) -> None:
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    # Both processes read the executor as failing before either claims it.
    first, second = the(), the()
    now = timezone.now()
    assert liveness._claim(first, now) is True
    assert liveness._claim(second, now) is False
    # And the claimed one is not claimed again by a later pass.
    assert probe_pass() == []
    assert the().state == "recovering"
    assert status(family, RUNNER)[0] == "PENDING"


def test_the_executors_page_shows_the_probes_and_the_held_recovery(
    family: Application, health: Health
) -> None:
    PoisonWorkflow.objects.create(
        application=family, workflow_id=RUNNER, executors_killed=1, executor_ids=["gone-0"]
    )
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    probe_pass()
    page = signed_in(make_user(username="otto", role="operator")).get("/apps/family/executors/")
    html = page.content.decode()
    assert "Executors seen in PENDING workflows" in html
    assert f"<code>{health.template}</code>" in html
    assert f"<code>{GONE}</code>" in html
    assert "answered HTTP 503" in html
    assert 'class="badge state-held">Held<' in html
    assert '<span class="muted">system database</span>' in html
    assert f"Poison workflow <code>{RUNNER}</code>" in html


def test_an_operator_cancels_a_held_suspect_in_the_system_database(
    family: Application, health: Health
) -> None:
    PoisonWorkflow.objects.create(
        application=family, workflow_id=RUNNER, executors_killed=1, executor_ids=["gone-0"]
    )
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    [held] = probe_pass()
    assert held.outcome == "held"
    operator = signed_in(make_user(username="otto", role="operator"))
    path = f"/api/v1/apps/family/poison/{RUNNER}/cancel"
    answer = operator.post(path, {"reason": "kills hosts"}, "application/json")
    assert answer.status_code == 204, answer.content
    assert status(family, RUNNER)[0] == "CANCELLED"
    assert PoisonWorkflow.objects.get(workflow_id=RUNNER).resolution == "cancel"
    cancel = AuditRecord.objects.get(action="workflow.cancel")
    assert (cancel.result, cancel.parameters["path"], cancel.reason) == (
        "ok",
        "database",
        "kills hosts",
    )
    assert AuditRecord.objects.filter(action="poison.cancel", result="ok").exists()
    # Nothing left pending on the gone executor: no further recovery.
    DatabaseExecutor.objects.update(recovered_at=timezone.now() - timedelta(seconds=31))
    assert probe_pass() == []
    # A second cancel finds nothing held.
    again = operator.post(path, {"reason": "again"}, "application/json")
    assert again.status_code == 404


def test_the_shared_id_local_is_never_probed_nor_recovered(
    family: Application, health: Health
) -> None:
    # Every executor run without DBOS__VMID is "local": one answer cannot speak for all.
    write(family, "UPDATE workflow_status SET executor_id = 'local' WHERE executor_id = %s", [GONE])
    health.status["local"] = 503
    probe_pass()
    gone_for(3600, "local")
    assert probe_pass() == []
    assert health.hits == []
    local = the("local")
    assert (local.state, local.failing_since) == ("unprobed", None)
    assert "DBOS__VMID" in local.probe_detail
    assert status(family, RUNNER)[0] == "PENDING"


def test_a_liveness_url_that_never_answered_recovers_nothing(
    family: Application, health: Health
) -> None:
    DatabaseExecutor.objects.filter(executor_id=PROVEN).delete()
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    assert probe_pass() == []
    assert "has not answered 2xx for any executor" in the().probe_detail
    assert status(family, RUNNER)[0] == "PENDING"
    # Another executor's work shows that the URL reaches executors: the gone one goes.
    write(
        family,
        "INSERT INTO workflow_status (workflow_uuid, status, name, created_at, updated_at,"
        " executor_id) VALUES ('other-work', 'PENDING', 'ship', 1, 1, 'other-executor')",
        [],
    )
    [attempt] = probe_pass()
    assert attempt.dead_executor_id == GONE
    assert the("other-executor").state == "alive"
    assert status(family, "other-work")[0] == "PENDING"


def test_a_new_liveness_url_has_to_answer_again(family: Application, health: Health) -> None:
    admin = signed_in(make_user(username="ada", role="admin"))
    moved = health.template.replace("/health/", "/healthz/")
    answer = admin.put(
        "/api/v1/apps/family/liveness", {"liveness_url_template": moved}, "application/json"
    )
    assert answer.status_code == 200, answer.content
    assert the(PROVEN).answered_at is None
    health.status[GONE] = 503
    probe_pass()
    gone_for(61)
    assert probe_pass() == []


def test_a_liveness_url_changed_in_the_admin_form_is_audited_and_must_answer_again(
    admin: Any,
) -> None:
    shop = Application.objects.create(name="shop", liveness_url_template="http://{executor_id}:1/")
    DatabaseExecutor.objects.create(application=shop, executor_id="e1", answered_at=timezone.now())
    client = signed_in(admin)
    change = reverse("admin:stepchange_application_change", args=[shop.pk])
    form = {
        "name": "shop",
        "system_database_schema": "dbos",
        "recovery_grace_seconds": "60",
        "keys-TOTAL_FORMS": "0",
        "keys-INITIAL_FORMS": "0",
    }
    refused = client.post(change, {**form, "liveness_url_template": "ftp://{executor_id}/"})
    assert refused.status_code == 200
    assert LIVENESS_HTTP_ONLY in refused.content.decode()
    assert the("e1").answered_at is not None
    saved = client.post(change, {**form, "liveness_url_template": "http://{executor_id}:2/"})
    assert saved.status_code == 302
    record = AuditRecord.objects.get(action="application.update")
    assert record.value_diff == {
        "liveness_url_template": {
            "before": "http://{executor_id}:1/",
            "after": "http://{executor_id}:2/",
        }
    }
    assert the("e1").answered_at is None


def seen_rows(html: str) -> dict[str, str]:
    """The rows of the Executors page's "Executors seen in PENDING workflows", by id."""
    section = html.split("Executors seen in PENDING workflows")[1].split("</section>")[0]
    rows = section.split("<tbody>")[1].split("</tr>")[:-1]
    cells = [(row.split("<td>")[1].split("</td>")[0], row) for row in rows]
    return {
        first.split("<code>")[1].split("</code>")[0]: row
        for first, row in cells
        if "<code>" in first
    }


def test_the_executors_page_lists_each_pending_executor_once_with_what_its_probe_found(
    family: Application, health: Health
) -> None:
    for workflow_id, version in [("other-1", "v2"), ("other-2", "v3")]:
        write(
            family,
            "INSERT INTO workflow_status (workflow_uuid, status, name, created_at, updated_at,"
            " executor_id, application_version) VALUES (%s, 'PENDING', 'ship', 1, 1, %s, %s)",
            [workflow_id, "other-gone", version],
        )
    otto = signed_in(make_user(username="otto", role="operator"))
    vera = signed_in(make_user(username="vera", role="viewer"))
    page = "/apps/family/executors/"
    rows = seen_rows(otto.get(page).content.decode())
    # One row per executor, its versions together; one probed never is not hidden, and
    # one whose probe is known but has nothing pending is not listed.
    assert {GONE, "other-gone"} <= set(rows)
    assert PROVEN not in rows
    assert "<code>v2</code>, <code>v3</code>" in rows["other-gone"]
    assert '<td class="num">2</td>' in rows["other-gone"]
    assert "not probed yet" in rows[GONE]
    assert "Seen in the system database" not in otto.get(page).content.decode()
    health.status[GONE] = 503
    probe_pass()
    rows = seen_rows(otto.get(page).content.decode())
    assert 'class="badge state-failing">Failing<' in rows[GONE]
    assert "answered HTTP 503" in rows[GONE]
    assert '<td class="num">2</td>' in rows[GONE]
    assert "Recover…" in rows[GONE]
    assert "Recover…" not in "".join(seen_rows(vera.get(page).content.decode()).values())
    gone_for(61)
    probe_pass()
    html = otto.get(page).content.decode()
    rows = seen_rows(html)
    # Recovered a moment ago: still listed, with nothing pending and nothing to recover.
    assert 'class="badge state-recovered">Recovered<' in rows[GONE]
    assert "nothing pending" in rows[GONE]
    assert "Recover…" not in rows[GONE]
    assert "No recoveries yet." not in html
    # An hour later it is left to the Recovery table.
    DatabaseExecutor.objects.filter(executor_id=GONE).update(
        recovered_at=timezone.now() - timedelta(hours=2)
    )
    rows = seen_rows(otto.get(page).content.decode())
    assert GONE not in rows
    assert "other-gone" in rows
