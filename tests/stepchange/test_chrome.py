"""The page chrome written in Python (`{% topbar %}`, `{% app_nav %}`) gives the markup the
templates it replaced gave, for anyone: not signed in, a viewer limited to some
applications, an admin with none; and on the pages themselves, the switcher and sections
link where they should."""

import re
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.template import engines
from django.test import RequestFactory
from django.urls import resolve

from stepchange.models import Application
from tests.conftest import make_app, make_user, signed_in

# The templates the tags replaced, as they were (base.html's header, _app_nav.html).
TOPBAR = """
  <header class="topbar">
    <a class="brand" href="{% url 'home' %}">Step<span>Change</span></a>
    {% if user.is_authenticated %}
      <details class="switcher">
        <summary>{{ current_app_name|default:"Applications" }}</summary>
        <ul>
          {% for app in nav_applications %}
            <li><a href="{% url 'dashboard' app.name %}"{% if app.name == current_app_name %} aria-current="page"{% endif %}>{{ app.name }}</a></li>
          {% empty %}
            <li class="muted">No applications you may see</li>
          {% endfor %}
        </ul>
      </details>
      <nav class="mainnav">
        <a href="{% url 'home' %}">Overview</a>
        <a href="{% url 'tokens' %}">API tokens</a>
        {% if is_admin %}
          <a href="{% url 'audit' %}">Audit log</a>
          <a href="{% url 'admin:index' %}">Admin</a>
        {% endif %}
      </nav>
      <div class="account">
        <span class="who">{{ user.get_username }} <span class="role role-{{ user_role }}">{{ user_role }}</span></span>
        <a href="{% url 'password_change' %}">Password</a>
        <form method="post" action="{% url 'logout' %}">{% csrf_token %}<button class="linklike" type="submit">Sign out</button></form>
      </div>
    {% endif %}
  </header>
"""  # noqa: E501
APP_NAV = """
<nav class="appnav">
  <h1>{{ application.name }}</h1>
  <a href="{% url 'dashboard' application.name %}"{% if section == "dashboard" %} aria-current="page"{% endif %}>Overview</a>
  <a href="{% url 'workflows' application.name %}"{% if section == "workflows" %} aria-current="page"{% endif %}>Workflows</a>
  <a href="{% url 'queued-workflows' application.name %}"{% if section == "queued" %} aria-current="page"{% endif %}>Queued</a>
  <a href="{% url 'executors' application.name %}"{% if section == "executors" %} aria-current="page"{% endif %}>Executors</a>
  <a href="{% url 'edited-forks' application.name %}"{% if section == "forks" %} aria-current="page"{% endif %}>Edited forks</a>
  <a href="{% url 'bulk-jobs' application.name %}"{% if section == "jobs" %} aria-current="page"{% endif %}>Bulk jobs</a>
  <a href="{% url 'requests' application.name %}"{% if section == "requests" %} aria-current="page"{% endif %}>Request log</a>
  {% if perms.stepchange.administer %}<a href="{% url 'retention' application.name %}"{% if section == "retention" %} aria-current="page"{% endif %}>Retention</a>{% endif %}
  <span class="live" id="live-status" title="Live updates">●</span>
</nav>
"""  # noqa: E501
SPLIT = "\n=====\n"


def _tight(html: str) -> str:
    return re.sub(r">\s+<", "><", html.strip())


def _both(reference: str, ours: str, user: Any, path: str, **extra: Any) -> tuple[str, str]:
    """The reference template and the tag rendered in one context (one CSRF token)."""
    request = RequestFactory().get(path)
    request.user = user
    request.resolver_match = resolve(path)
    source = reference + SPLIT + ours
    rendered = engines["django"].from_string(source).render(extra, request)
    old, new = rendered.split(SPLIT)
    return _tight(old), _tight(new)


@pytest.fixture
def two_apps(db: None) -> list[Application]:
    return [make_app(name="orders"), make_app(name="billing-eu")]


def test_the_top_bar_is_the_one_the_template_gave(two_apps: list[Application]) -> None:
    viewer = make_user(username="o'neil<&>", role="viewer", apps=[two_apps[0]])
    admin = make_user(username="ada", role="admin")
    cases: list[tuple[Any, str]] = [
        (AnonymousUser(), "/"),
        (viewer, "/apps/orders/workflows/"),
        (viewer, "/"),
        (admin, "/apps/billing-eu/"),
    ]
    seen = []
    for user, path in cases:
        old, new = _both(TOPBAR, "{% topbar %}", user, path)
        assert new == old
        seen.append(new)
    anonymous, viewer_here, viewer_home, admin_page = seen
    assert "switcher" not in anonymous
    assert 'href="/apps/orders/" aria-current="page">orders</a>' in viewer_here
    assert "billing-eu" not in viewer_here  # not an application this viewer may see
    assert "o&#x27;neil&lt;&amp;&gt;" in viewer_here
    assert 'name="csrfmiddlewaretoken"' in viewer_here
    assert "<summary>Applications</summary>" in viewer_home
    assert "Audit log" not in viewer_home
    assert 'href="/apps/billing-eu/" aria-current="page"' in admin_page
    assert "Audit log" in admin_page


def test_an_admin_without_applications_is_told_so(db: None) -> None:
    admin = make_user(username="ada", role="admin")
    old, new = _both(TOPBAR, "{% topbar %}", admin, "/")
    assert new == old
    assert '<li class="muted">No applications you may see</li>' in new


@pytest.mark.parametrize("section", ["dashboard", "workflows", "queued", "retention", "nothing"])
def test_the_section_links_are_the_ones_the_template_gave(
    two_apps: list[Application], section: str
) -> None:
    viewer = make_user(username="vic", role="viewer")
    admin = make_user(username="ada", role="admin")
    for user in (viewer, admin):
        old, new = _both(
            APP_NAV,
            "{% app_nav section %}",
            user,
            "/apps/billing-eu/",
            application=two_apps[1],
            section=section,
        )
        assert new == old
        assert ("Retention" in new) == (user is admin)
        marked = section != "nothing" and (section != "retention" or user is admin)
        assert (' aria-current="page"' in new) == marked


def test_the_pages_carry_the_chrome(two_apps: list[Application]) -> None:
    viewer: User = make_user(username="vic", role="viewer")
    page = signed_in(viewer).get("/apps/orders/executors/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('<header class="topbar">') == 1
    assert '<a href="/apps/orders/executors/" aria-current="page">Executors</a>' in html
    assert "<summary>orders</summary>" in html
