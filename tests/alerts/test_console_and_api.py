"""Stories of an admin making rules and channels in the console and through the API: the
happy paths, every refusal with its reason and nothing written, and an operator who may
not."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.models import AlertChannel, AlertDelivery, AlertRule
from stepchange.models import Application, AuditRecord
from tests.alerts.helpers import make_channel, make_rule
from tests.conftest import make_app, signed_in

API = "/api/v1/apps/orders"
RULES = "/apps/orders/alerts/rules/"
CHANNELS = "/apps/orders/alerts/channels/"
FAILURES = {"workflow_name": "ship", "threshold": 3, "window_seconds": 300}


@pytest.fixture
def orders(db: None) -> Application:
    return make_app()


def _post_json(client: Any, url: str, body: Any, method: str = "post") -> Any:
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


def test_an_admin_makes_a_rule_in_the_console(admin: User, orders: Application) -> None:
    hook = make_channel(application=orders, url="https://hooks.example.com/a")
    client = signed_in(admin)
    page = client.get(RULES)
    assert page.status_code == 200
    assert b"New rule" in page.content
    answer = client.post(
        RULES,
        {
            "name": "ship keeps failing",
            "kind": "failures",
            "workflow_name": "ship",
            "threshold": "3",
            "window_seconds": "300",
            "older_than_seconds": "99",  # not this kind's: ignored
            "repeat_seconds": "600",
            "channels": [hook.pk],
            "enabled": "on",
        },
    )
    assert answer.status_code == 302
    rule = AlertRule.objects.get()
    assert rule.parameters == FAILURES
    assert list(rule.channels.all()) == [hook]
    record = AuditRecord.objects.get(action="alert_rule.create")
    assert record.actor_name == "ada"
    assert record.parameters["after"]["parameters"] == FAILURES


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"window_seconds": "0"}, "The window (seconds) must be at least 1; got 0."),
        ({"threshold": "lots"}, "The threshold must be a whole number; got &#x27;lots&#x27;."),
        ({"workflow_name": ""}, "The workflow name is required for this kind of rule."),
    ],
)
def test_a_bad_rule_in_the_console_is_refused_with_the_reason(
    admin: User, orders: Application, fields: dict[str, str], reason: str
) -> None:
    form = {
        "name": "r",
        "kind": "failures",
        "workflow_name": "ship",
        "threshold": "3",
        "window_seconds": "300",
        "repeat_seconds": "0",
    }
    answer = signed_in(admin).post(RULES, {**form, **fields})
    assert answer.status_code == 200
    assert reason in answer.content.decode()
    assert AlertRule.objects.count() == 0
    assert not AuditRecord.objects.filter(action__startswith="alert_rule").exists()


def test_a_channel_pointing_at_stepchange_is_refused_in_the_console(
    admin: User, orders: Application
) -> None:
    answer = signed_in(admin).post(
        CHANNELS, {"name": "loop", "kind": "webhook", "url": "http://127.0.0.1:8001/x"}
    )
    assert answer.status_code == 200
    assert "points at StepChange itself" in answer.content.decode()
    assert AlertChannel.objects.count() == 0


def test_a_channel_at_the_consoles_own_address_is_refused_with_the_reason(
    admin: User, orders: Application
) -> None:
    # The test client's requests come to testserver, port 80.
    answer = signed_in(admin).post(
        CHANNELS, {"name": "loop", "kind": "webhook", "url": "http://testserver/hook"}
    )
    assert answer.status_code == 200
    assert "the host and port this request came to" in answer.content.decode()
    assert AlertChannel.objects.count() == 0


def test_an_admin_mutes_a_rule_and_it_is_audited(admin: User, orders: Application) -> None:
    rule = make_rule(application=orders, kind=AlertRule.Kind.POISON)
    until = (timezone.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    client = signed_in(admin)
    answer = client.post(f"{RULES}{rule.pk}/mute/", {"until": until, "reason": "deploy"})
    assert answer.status_code == 302
    rule.refresh_from_db()
    assert rule.muted()
    record = AuditRecord.objects.get(action="alert_rule.mute")
    assert record.reason == "deploy"
    assert record.parameters["before"] is None
    client.post(f"{RULES}{rule.pk}/mute/", {"until": ""})
    rule.refresh_from_db()
    assert rule.muted_until is None
    assert AuditRecord.objects.filter(action="alert_rule.mute").count() == 2


def test_the_channel_page_shows_failures_and_a_test_button(
    admin: User, orders: Application
) -> None:
    hook = make_channel(application=orders, url="https://hooks.example.com/a")
    AlertDelivery.objects.create(
        channel=hook,
        event="test",
        message={"summary": "s"},
        state="failed",
        attempts=12,
        last_error="HTTP 503: down",
    )
    client = signed_in(admin)
    page = client.get(f"{CHANNELS}{hook.pk}/").content.decode()
    assert "1 message could not be delivered" in page
    assert "HTTP 503: down" in page
    assert client.post(f"{CHANNELS}{hook.pk}/test/").status_code == 302
    assert AlertDelivery.objects.filter(channel=hook, state="pending").count() == 1


def test_the_history_page_lists_alerts(admin: User, orders: Application) -> None:
    rule = make_rule(application=orders, kind=AlertRule.Kind.POISON, name="poison")
    rule.alerts.create(key="wf-1", summary="Workflow wf-1 is held as poison")
    page = signed_in(admin).get("/apps/orders/alerts/").content.decode()
    assert "Workflow wf-1 is held as poison" in page


def test_an_operator_may_not_see_or_change_alerts(operator: User, orders: Application) -> None:
    client = signed_in(operator)
    assert client.get(RULES).status_code == 403
    assert client.post(CHANNELS, {"name": "x", "kind": "slack"}).status_code == 403
    assert (
        _post_json(client, f"{API}/alert-rules", {"name": "x", "kind": "poison"}).status_code == 403
    )
    assert AlertRule.objects.count() == 0


def test_an_admin_makes_a_rule_and_a_channel_through_the_api(
    admin: User, orders: Application
) -> None:
    client = signed_in(admin)
    made = _post_json(
        client,
        f"{API}/alert-channels",
        {"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/a"},
    )
    assert made.status_code == 201, made.content
    channel = made.json()
    assert len(channel["secret"]) >= 32
    rule = _post_json(
        client,
        f"{API}/alert-rules",
        {"name": "r", "kind": "failures", "parameters": FAILURES, "channels": [channel["id"]]},
    )
    assert rule.status_code == 201, rule.content
    assert rule.json()["parameters"] == FAILURES
    rule_id = rule.json()["id"]
    until = (timezone.now() + timedelta(hours=1)).isoformat()
    muted = _post_json(client, f"{API}/alert-rules/{rule_id}/mute", {"until": until})
    assert muted.status_code == 200
    assert muted.json()["muted_until"] is not None
    tested = client.post(f"{API}/alert-channels/{channel['id']}/test")
    assert tested.status_code == 202
    assert client.get(f"{API}/alert-rules").json()[0]["id"] == rule_id
    assert client.get(f"{API}/alerts").json() == []
    assert set(
        AuditRecord.objects.exclude(action="auth.login").values_list("action", flat=True)
    ) == {
        "alert_channel.create",
        "alert_rule.create",
        "alert_rule.mute",
        "alert_channel.test",
    }


@pytest.mark.parametrize(
    ("body", "where", "why"),
    [
        (
            {"name": "r", "kind": "failures", "parameters": {**FAILURES, "window_seconds": 0}},
            ["parameters", "window_seconds"],
            "greater than or equal to 1",
        ),
        (
            {"name": "r", "kind": "failures", "parameters": {**FAILURES, "threshold": "x"}},
            ["parameters", "threshold"],
            "valid integer",
        ),
        (
            {"name": "r", "kind": "failures", "parameters": {"workflow_name": "ship"}},
            ["parameters", "threshold"],
            "Field required",
        ),
        ({"name": "r", "kind": "sometimes", "parameters": {}}, [], "'sometimes'"),
    ],
)
def test_a_bad_rule_through_the_api_is_a_400_naming_the_field(
    admin: User, orders: Application, body: dict[str, Any], where: list[str], why: str
) -> None:
    answer = _post_json(signed_in(admin), f"{API}/alert-rules", body)
    assert answer.status_code == 400
    errors = answer.json()["detail"]
    assert any(
        why in error["msg"] and (not where or error["loc"][-len(where) :] == where)
        for error in errors
    ), errors
    assert AlertRule.objects.count() == 0
    assert not AuditRecord.objects.filter(action__startswith="alert_").exists()


def test_a_channel_of_another_application_is_not_found_through_the_api(
    admin: User, orders: Application
) -> None:
    theirs = make_channel(application=make_app(name="billing"), url="https://h.example.com/x")
    body = {"name": "r", "kind": "poison", "parameters": {}, "channels": [theirs.pk]}
    answer = _post_json(signed_in(admin), f"{API}/alert-rules", body)
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"Channel {theirs.pk} is not one of orders's channels."


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"name": "c", "kind": "slack", "url": "http://localhost:8001/api/v1/apps"},
            "points at StepChange itself",
        ),
        (
            {"name": "c", "kind": "email", "recipients": "ops@example.com, ops@-bad-.com"},
            "Not an email address",
        ),
    ],
)
def test_a_bad_channel_through_the_api_is_a_400_with_the_reason(
    admin: User, orders: Application, body: dict[str, Any], detail: str
) -> None:
    answer = _post_json(signed_in(admin), f"{API}/alert-channels", body)
    assert answer.status_code == 400
    assert detail in answer.json()["detail"]
    assert AlertChannel.objects.count() == 0
    assert not AuditRecord.objects.filter(action__startswith="alert_").exists()


def test_a_webhook_url_that_is_not_http_is_a_400_naming_the_field(
    admin: User, orders: Application
) -> None:
    body = {"name": "c", "kind": "webhook", "url": "gopher://hooks.example.com"}
    answer = _post_json(signed_in(admin), f"{API}/alert-channels", body)
    assert answer.status_code == 400
    assert any(e["loc"][-1] == "url" for e in answer.json()["detail"]), answer.json()
    assert AlertChannel.objects.count() == 0


def test_a_name_in_use_is_a_409(admin: User, orders: Application) -> None:
    client = signed_in(admin)
    body = {"name": "p", "kind": "poison", "parameters": {}}
    assert _post_json(client, f"{API}/alert-rules", body).status_code == 201
    again = _post_json(client, f"{API}/alert-rules", body)
    assert again.status_code == 409
    assert again.json()["detail"] == "orders already has a rule named 'p'."


def test_only_an_admin_finds_alerts_in_the_applications_sections(
    admin: User, operator: User, orders: Application
) -> None:
    assert (
        'href="/apps/orders/alerts/"'
        in signed_in(admin).get("/apps/orders/executors/").content.decode()
    )
    assert "/alerts/" not in signed_in(operator).get("/apps/orders/executors/").content.decode()


def _delivery(channel: AlertChannel, state: str, attempts: int, **fields: Any) -> AlertDelivery:
    return AlertDelivery.objects.create(
        channel=channel,
        event="firing",
        message={"summary": f"{state} after {attempts}"},
        state=state,
        attempts=attempts,
        **fields,
    )


def test_the_channels_page_counts_failing_messages_in_one_query(
    admin: User, orders: Application, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(admin)
    client.get(CHANNELS)  # the session and the user, read once
    with CaptureQueriesContext(connection) as no_channels:
        client.get(CHANNELS)
    for name in ("a", "b", "c"):
        hook = make_channel(application=orders, url=f"https://hooks.example.com/{name}", name=name)
        _delivery(hook, "failed", 12)  # given up
        _delivery(hook, "pending", 2)  # retried
        _delivery(hook, "pending", 0)  # not tried yet
        _delivery(hook, "delivered", 3)
    with django_assert_max_num_queries(len(no_channels)):
        page = client.get(CHANNELS).content.decode()
    assert page.count("2 failing") == 3


def test_deleting_a_rule_keeps_the_messages_queued_for_its_alerts(
    admin: User, orders: Application
) -> None:
    hook = make_channel(application=orders, url="https://hooks.example.com/a")
    rule = make_rule(application=orders, kind=AlertRule.Kind.POISON, channels=[hook])
    alert = rule.alerts.create(key="wf-1", summary="Workflow wf-1 is held as poison")
    queued = _delivery(hook, "pending", 1, alert=alert)
    client = signed_in(admin)
    assert client.post(f"{RULES}{rule.pk}/delete/").status_code == 302
    assert not AlertRule.objects.exists()
    queued.refresh_from_db()
    assert (queued.alert, queued.state) == (None, "pending")
    assert "pending after 1" in client.get(f"{CHANNELS}{hook.pk}/").content.decode()
    record = AuditRecord.objects.get(action="alert_rule.delete")
    assert record.target == f"alert rule {rule.pk}"
    assert record.parameters["before"]["channels"] == [hook.pk]
    assert record.parameters["after"] is None


def test_a_channel_with_messages_to_deliver_is_not_deleted(
    admin: User, orders: Application
) -> None:
    hook = make_channel(application=orders, url="https://hooks.example.com/a")
    queued = _delivery(hook, "pending", 3)
    _delivery(hook, "failed", 12)
    client = signed_in(admin)
    refused = client.delete(f"{API}/alert-channels/{hook.pk}")
    assert refused.status_code == 409
    when = f"{queued.next_attempt_at:%Y-%m-%d %H:%M:%S}"
    assert refused.json()["detail"] == (
        "Channel 'hook' still has 1 message to deliver, which would be lost with it: delete "
        "it once they are delivered or given up on (they are retried with backoff; the next "
        f"attempt is at {when} UTC)."
    )
    assert AlertDelivery.objects.count() == 2
    assert not AuditRecord.objects.filter(action="alert_channel.delete").exists()
    # Given up on, it goes, and the record says how many messages went with it.
    AlertDelivery.objects.filter(pk=queued.pk).update(state="failed")
    assert client.delete(f"{API}/alert-channels/{hook.pk}").status_code == 204
    assert not AlertChannel.objects.exists()
    record = AuditRecord.objects.get(action="alert_channel.delete")
    assert record.parameters["before"]["deliveries"] == 2
