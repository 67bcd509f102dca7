"""Bad rules and channels are refused with the reason, and nothing is written."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from alerts import channels as ch
from alerts import rules
from alerts.models import AlertChannel, AlertRule
from alerts.services import channel_save, rule_save
from stepchange.models import AuditRecord
from tests.conftest import make_app

Kind = AlertRule.Kind


def test_a_window_of_zero_is_refused() -> None:
    with pytest.raises(rules.RuleError, match=r"window .* at least 1; got 0"):
        rules.parameters_clean(
            Kind.FAILURES, {"workflow_name": "ship", "threshold": 3, "window_seconds": 0}
        )


@pytest.mark.parametrize("threshold", ["three", "3.5", True, [3], {"n": 3}])
def test_a_threshold_that_is_not_a_number_is_refused(threshold: Any) -> None:
    with pytest.raises(rules.RuleError, match="threshold must be a whole number"):
        rules.parameters_clean(
            Kind.FAILURES,
            {"workflow_name": "ship", "threshold": threshold, "window_seconds": 60},
        )


def test_numbers_written_as_text_are_taken() -> None:
    cleaned = rules.parameters_clean(
        Kind.FAILURES, {"workflow_name": " ship ", "threshold": "3", "window_seconds": 60.0}
    )
    assert cleaned == {"workflow_name": "ship", "threshold": 3, "window_seconds": 60}


def test_a_parameter_the_kind_does_not_take_is_refused() -> None:
    with pytest.raises(rules.RuleError, match="takes no 'threshold'"):
        rules.parameters_clean(Kind.POISON, {"threshold": 3})


def test_a_stuck_rule_names_only_waiting_statuses() -> None:
    assert rules.parameters_clean(Kind.STUCK, {"older_than_seconds": 5})["status"] == (
        "PENDING,ENQUEUED"
    )
    with pytest.raises(rules.RuleError, match="PENDING, ENQUEUED or both"):
        rules.parameters_clean(Kind.STUCK, {"older_than_seconds": 5, "status": "SUCCESS"})


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example.com/x", "javascript:alert(1)", "hooks.example.com/x", "http://", ""],
)
def test_a_webhook_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ch.ChannelError):
        ch.channel_clean(kind=AlertChannel.Kind.WEBHOOK, url=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/api/v1/apps",
        "http://localhost:8001/",
        "http://[::1]:8001/x",
        "http://0.0.0.0:8001/x",
    ],
)
def test_a_channel_pointing_at_stepchange_itself_is_refused(url: str, settings: Any) -> None:
    settings.SITE_URL = "http://127.0.0.1:8001"
    with pytest.raises(ch.ChannelError, match="points at StepChange itself"):
        ch.channel_clean(kind=AlertChannel.Kind.SLACK, url=url)


def test_a_channel_at_the_public_site_url_is_refused(settings: Any) -> None:
    settings.SITE_URL = "https://stepchange.example.com"
    with pytest.raises(ch.ChannelError, match="points at StepChange itself"):
        ch.channel_clean(kind=AlertChannel.Kind.WEBHOOK, url="https://stepchange.example.com/h")
    # Another port of the same machine is someone else.
    assert ch.url_check("http://127.0.0.1:9999/h") == "http://127.0.0.1:9999/h"


def test_a_webhook_without_a_secret_gets_one() -> None:
    fields = ch.channel_clean(kind=AlertChannel.Kind.WEBHOOK, url="https://hooks.example.com/a")
    assert len(fields["secret"]) >= 32


def test_email_and_pagerduty_need_their_fields() -> None:
    with pytest.raises(ch.ChannelError, match="at least one recipient"):
        ch.channel_clean(kind=AlertChannel.Kind.EMAIL)
    with pytest.raises(ch.ChannelError, match="Not an email address"):
        ch.channel_clean(kind=AlertChannel.Kind.EMAIL, recipients="ops@example.com, nope")
    with pytest.raises(ch.ChannelError, match="routing key"):
        ch.channel_clean(kind=AlertChannel.Kind.PAGERDUTY)


def test_a_refused_rule_or_channel_writes_nothing(admin: User) -> None:
    app = make_app()
    audited = AuditRecord.objects.count()
    with pytest.raises(rules.RuleError):
        rule_save(
            application=app,
            request=None,
            name="too many failures",
            kind=Kind.FAILURES,
            parameters={"workflow_name": "ship", "threshold": "x", "window_seconds": 60},
            channel_ids=[],
        )
    with pytest.raises(ch.ChannelError):
        channel_save(
            application=app, request=None, name="hook", kind="webhook", url="file:///etc/passwd"
        )
    assert AlertRule.objects.count() == 0
    assert AlertChannel.objects.count() == 0
    assert AuditRecord.objects.count() == audited


def test_a_rule_may_not_use_another_applications_channel(db: None) -> None:
    orders, billing = make_app(), make_app(name="billing")
    theirs = channel_save(
        application=billing, request=None, name="hook", kind="slack", url="https://h.example.com/x"
    )
    with pytest.raises(rules.RuleError, match="not one of orders's channels"):
        rule_save(
            application=orders,
            request=None,
            name="gone",
            kind=Kind.EXECUTOR_GONE,
            parameters={},
            channel_ids=[theirs.pk],
        )
