"""Bad rules and channels are refused with the reason, and nothing is written."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory

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
    with pytest.raises(ch.ChannelError, match=r"points at StepChange itself \(.*: SITE_URL's"):
        ch.channel_clean(kind=AlertChannel.Kind.SLACK, url=url)


def test_a_channel_at_the_public_site_url_is_refused(settings: Any) -> None:
    settings.SITE_URL = "https://stepchange.example.com"
    with pytest.raises(ch.ChannelError, match="points at StepChange itself"):
        ch.channel_clean(kind=AlertChannel.Kind.WEBHOOK, url="https://stepchange.example.com/h")
    # Another port of the same machine is someone else.
    assert ch.url_check("http://127.0.0.1:9999/h") == "http://127.0.0.1:9999/h"


def test_a_channel_at_another_name_of_stepchange_is_refused(settings: Any) -> None:
    settings.SITE_URL = "https://stepchange.example.com"
    settings.ALLOWED_HOSTS = ["stepchange.example.com", "sc.corp.internal", "*", ".example.org"]
    with pytest.raises(ch.ChannelError) as refused:
        ch.url_check("https://SC.corp.internal/hook")
    assert str(refused.value) == ch.POINTS_HERE.format(
        netloc="SC.corp.internal",
        why="sc.corp.internal is one of ALLOWED_HOSTS, and 443 is StepChange's port",
    )
    # Another port of that host is someone else; a wildcard names no one host.
    assert ch.url_check("https://sc.corp.internal:9443/h") == "https://sc.corp.internal:9443/h"
    assert ch.url_check("https://hooks.example.org/h") == "https://hooks.example.org/h"


def _request_to(host: str, server_port: int) -> Any:
    """A request that came to `host` (its Host header) and was accepted on `server_port`:
    StepChange behind a proxy sees both."""
    return RequestFactory().post("/", HTTP_HOST=host, SERVER_PORT=str(server_port))


def test_a_channel_at_the_address_the_request_came_to_is_refused(settings: Any) -> None:
    settings.SITE_URL = "https://stepchange.example.com"
    settings.ALLOWED_HOSTS = ["stepchange.example.com", "sc.lan"]
    request = _request_to("sc.lan:8001", 8001)
    with pytest.raises(ch.ChannelError) as refused:
        ch.url_check("http://sc.lan:8001/api/v1", request=request)
    assert "(sc.lan:8001: the host and port this request came to)" in str(refused.value)


def test_a_loopback_address_at_the_port_stepchange_serves_is_refused(settings: Any) -> None:
    settings.SITE_URL = "https://stepchange.example.com"
    settings.ALLOWED_HOSTS = ["stepchange.example.com"]
    # Behind a proxy: the request came to port 443 and Daphne accepted it on 8001.
    request = _request_to("stepchange.example.com", 8001)
    for url in ("http://127.0.0.1:8001/api", "http://localhost:8001/", "http://[::1]:8001/"):
        with pytest.raises(ch.ChannelError) as refused:
            ch.url_check(url, request=request)
        assert "a loopback address at StepChange's port 8001)" in str(refused.value)
    # Other ports of this machine are someone else's.
    assert ch.url_check("http://127.0.0.1:9000/h", request=request) == "http://127.0.0.1:9000/h"


def test_a_channel_at_stepchanges_own_address_is_refused_when_saved(
    admin: User, settings: Any
) -> None:
    settings.SITE_URL = "https://stepchange.example.com"
    settings.ALLOWED_HOSTS = ["stepchange.example.com", "sc.lan"]
    with pytest.raises(ch.ChannelError, match="the host and port this request came to"):
        channel_save(
            application=make_app(),
            request=_request_to("sc.lan:8001", 8001),
            name="loop",
            kind="slack",
            url="http://sc.lan:8001/x",
        )
    assert AlertChannel.objects.count() == 0


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
