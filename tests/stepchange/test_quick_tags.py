"""The console's `{% url %}` and `|date` stand in for Django's: they must give exactly what
Django's give, and the URL tag must not build the same URL twice."""

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from django.http import HttpResponse
from django.template import Context, Engine
from django.test import RequestFactory, override_settings
from django.urls import NoReverseMatch, path, resolve, reverse

from stepchange.templatetags import quick

DJANGO = Engine(builtins=[])
OURS = Engine(builtins=["stepchange.templatetags.quick"])


def both(source: str, **context: Any) -> tuple[str, str]:
    return tuple(  # type: ignore[return-value]
        engine.from_string(source).render(Context(context)) for engine in (DJANGO, OURS)
    )


@pytest.mark.parametrize(
    "source",
    [
        "{% url 'home' %}",
        "{% url 'workflows' name %}",
        "{% url 'workflow-detail' name wid %}",
        "{% url 'workflow-detail' app_name=name workflow_id=wid %}",
        "{% url 'workflow-detail' name wid as link %}[{{ link }}]",
        "{% url 'no-such-view' as link %}[{{ link }}]",
        "{% autoescape off %}{% url 'workflow-detail' name wid %}{% endautoescape %}",
        "{% url view name %}",
    ],
)
def test_a_url_is_the_one_django_builds(source: str) -> None:
    django, ours = both(source, name="orders & co", wid="wf-1 <2>&x", view="dashboard")
    assert ours == django
    assert ours.strip("[]") or "no-such-view" in source


def test_an_unknown_view_fails_as_it_does_in_django() -> None:
    for engine in (DJANGO, OURS):
        with pytest.raises(NoReverseMatch):
            engine.from_string("{% url 'no-such-view' %}").render(Context({}))


def test_the_admin_links_follow_the_current_application_namespace() -> None:
    request = RequestFactory().get("/admin/")
    request.resolver_match = resolve("/admin/")
    source = "{% url 'admin:index' %}|{% url 'admin:auth_user_changelist' %}"
    rendered = [e.from_string(source).render(Context({"request": request})) for e in (DJANGO, OURS)]
    assert rendered[0] == rendered[1] == "/admin/|/admin/auth/user/"


def test_a_url_is_built_once_and_forgotten_when_the_urlconf_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quick.remembered_reverse.cache_clear()
    calls: list[str] = []
    real = reverse

    def counting(view_name: str, **kwargs: Any) -> str:
        calls.append(view_name)
        return real(view_name, **kwargs)

    monkeypatch.setattr(quick, "reverse", counting)
    template = OURS.from_string("{% url 'workflows' name %}")
    assert [template.render(Context({"name": n})) for n in ("a", "a", "b", "a")] == [
        "/apps/a/workflows/",
        "/apps/a/workflows/",
        "/apps/b/workflows/",
        "/apps/a/workflows/",
    ]
    assert calls == ["workflows", "workflows"]
    with override_settings(ROOT_URLCONF=__name__):
        assert template.render(Context({"name": "a"})) == "/elsewhere/a/"
    assert template.render(Context({"name": "a"})) == "/apps/a/workflows/"
    assert len(calls) == 4
    # A value that cannot be a key is still linked, just not remembered.
    listed = OURS.from_string("{% url 'workflows' name %}").render(Context({"name": ["x"]}))
    assert listed == DJANGO.from_string("{% url 'workflows' name %}").render(
        Context({"name": ["x"]})
    )


def _elsewhere(request: Any, app_name: str) -> HttpResponse:
    raise AssertionError("never called")


urlpatterns = [path("elsewhere/<str:app_name>/", _elsewhere, name="workflows")]

MOMENTS = [
    datetime(2026, 12, 3, 7, 5, 9, 12, tzinfo=UTC),
    datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 6, 1, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2024, 2, 29, 12, 0),  # noqa: DTZ001 (a naive one too)
    datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
]
FORMATS = [
    "Y-m-d H:i:s",
    "Y-m-d H:i:s.u",
    "Y-m-d H:i",
    "m-d H:i",
    "H:i:s",
    "Y-m-d",
    "c",
    "N j, Y, P",
    "D T",
    r"\Y Y",
    "U",
    None,
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_date_is_shown_as_django_shows_it(fmt: str | None, settings: Any) -> None:
    for zone in ("UTC", "Asia/Tokyo"):
        settings.TIME_ZONE = zone
        for moment in [*MOMENTS, date(2026, 12, 3), None, ""]:
            a_day = isinstance(moment, date) and not isinstance(moment, datetime)
            if a_day and fmt and any(c in fmt for c in "HisuUcPT"):
                continue  # Django refuses time formats for a date
            source = "{{ moment|date }}" if fmt is None else "{{ moment|date:fmt }}"
            django, ours = both(source, moment=moment, fmt=fmt)
            assert ours == django, (moment, fmt, zone)


def test_the_quick_date_formats_only_what_strftime_writes_alike() -> None:
    assert quick._strftime_pattern("Y-m-d H:i:s.u") == "%Y-%m-%d %H:%M:%S.%f"
    assert quick._strftime_pattern("D T") is None
    assert quick._strftime_pattern(r"\Y") is None
    assert quick._strftime_pattern("Y%m") is None
