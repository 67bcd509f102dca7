"""Stories about who may see and do what."""

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.test import Client

from stepchange.access import can_see, require, visible_applications, visible_to
from stepchange.roles import PERM_ADMINISTER, PERM_INSPECT, PERM_OPERATE, Role, role_of
from tests.conftest import make_app, make_user, signed_in


def test_migrate_creates_the_three_roles(db: None) -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "operator", "admin"}


@pytest.mark.parametrize(
    ("persona", "role", "inspect", "operate", "administer"),
    [
        ("admin", Role.ADMIN, True, True, True),
        ("operator", Role.OPERATOR, True, True, False),
        ("viewer", Role.VIEWER, True, False, False),
        ("stranger", Role.NONE, False, False, False),
    ],
)
def test_each_role_holds_exactly_the_permissions_its_name_promises(
    request: pytest.FixtureRequest,
    persona: str,
    role: Role,
    inspect: bool,
    operate: bool,
    administer: bool,
) -> None:
    user = request.getfixturevalue(persona)
    assert role_of(user) is role
    assert user.has_perm(PERM_INSPECT) is inspect
    assert user.has_perm(PERM_OPERATE) is operate
    assert user.has_perm(PERM_ADMINISTER) is administer


def test_an_admin_may_manage_applications_and_users_but_an_operator_may_not(
    admin: User, operator: User
) -> None:
    for permission in ["stepchange.add_application", "stepchange.add_executorkey", "auth.add_user"]:
        assert admin.has_perm(permission)
        assert not operator.has_perm(permission)


def test_users_see_every_application_unless_limited(viewer: User) -> None:
    orders, billing = make_app(name="orders"), make_app(name="billing")
    assert set(visible_to(viewer)) == {orders, billing}
    limited = make_user(username="lena", role="operator", apps=[billing])
    assert list(visible_to(limited)) == [billing]


def test_a_stranger_sees_no_application(stranger: User) -> None:
    make_app(name="orders")
    assert not visible_to(stranger).exists()


def test_can_see_and_the_switcher_agree_with_visible_to(
    viewer: User, stranger: User, admin: User
) -> None:
    """`can_see` and `visible_applications` (the checks in Python after one prepared
    query) say what `Application.objects.visible_to` says, for every kind of user."""
    orders, billing = make_app(name="orders"), make_app(name="billing")
    limited = make_user(username="lena", role="operator", apps=[billing])
    superuser = User.objects.create_superuser("root", password="x")
    for user in (viewer, stranger, admin, limited, superuser):
        expected = list(visible_to(user).order_by("name"))
        assert visible_applications(user) == expected, user
        assert {a for a in (orders, billing) if can_see(user, a)} == set(expected), user
    assert [a.name for a in visible_applications(limited)] == ["billing"]
    assert visible_applications(stranger) == []
    # The switcher on a page, for the limited user: only what they may see.
    page = signed_in(limited).get("/apps/billing/executors/").content.decode()
    switcher = page.split('<details class="switcher">')[1].split("</details>")[0]
    assert "billing" in switcher
    assert "orders" not in switcher


def test_an_inactive_user_has_no_role(operator: User) -> None:
    operator.is_active = False
    operator.save()
    assert role_of(operator) is Role.NONE


def test_require_refuses_an_application_outside_the_users_access(db: None) -> None:
    orders, billing = make_app(name="orders"), make_app(name="billing")
    limited = make_user(username="lena", role="operator", apps=[billing])
    require(limited, PERM_OPERATE, billing)
    with pytest.raises(PermissionDenied, match="do not have access"):
        require(limited, PERM_OPERATE, orders)
    with pytest.raises(PermissionDenied, match="role does not allow"):
        require(limited, PERM_ADMINISTER)


def _between(html: str, start: str, end: str) -> str:
    return html.split(start, 1)[1].split(end, 1)[0]


def test_the_top_bar_shows_a_limited_viewer_their_applications_and_no_admin_links(
    db: None,
) -> None:
    orders, _ = make_app(name="orders"), make_app(name="billing-eu")
    viewer = make_user(username="o'neil<&>", role="viewer", apps=[orders])
    client = signed_in(viewer)
    page = client.get("/apps/orders/executors/").content.decode()
    topbar = _between(page, '<header class="topbar">', "</header>")
    switcher = _between(topbar, '<details class="switcher">', "</details>")
    assert "<summary>orders</summary>" in switcher
    assert 'href="/apps/orders/" aria-current="page">orders</a>' in switcher
    assert "billing-eu" not in switcher
    assert "o&#x27;neil&lt;&amp;&gt;" in topbar
    assert "o'neil<&>" not in page
    assert '<span class="role role-viewer">viewer</span>' in topbar
    sign_out = _between(topbar, 'action="/accounts/logout/">', "</form>")
    assert 'name="csrfmiddlewaretoken"' in sign_out
    assert "Audit log" not in topbar
    assert 'href="/admin/"' not in topbar
    # The application's sections, this one marked; Retention is an admin's.
    sections = _between(page, '<nav class="appnav"', "</nav>")
    assert "<h1>orders</h1>" in sections
    assert '<a href="/apps/orders/executors/" aria-current="page">Executors</a>' in sections
    assert sections.count("aria-current") == 1
    assert "/retention/" not in sections
    # Away from an application the switcher names none.
    home = client.get("/").content.decode()
    assert "<summary>Applications</summary>" in home
    assert 'aria-current="page"' not in _between(home, '<header class="topbar">', "</header>")


def test_an_admin_sees_the_admin_links_and_every_application(admin: User) -> None:
    client = signed_in(admin)
    assert '<li class="muted">No applications you may see</li>' in client.get("/").content.decode()
    make_app(name="orders")
    make_app(name="billing-eu")
    page = client.get("/apps/billing-eu/retention/").content.decode()
    topbar = _between(page, '<header class="topbar">', "</header>")
    assert 'href="/apps/orders/">orders</a>' in topbar
    assert 'href="/apps/billing-eu/" aria-current="page">billing-eu</a>' in topbar
    assert '<a href="/audit/">Audit log</a>' in topbar
    assert '<a href="/admin/">Admin</a>' in topbar
    sections = _between(page, '<nav class="appnav"', "</nav>")
    assert 'href="/apps/billing-eu/retention/" aria-current="page">Retention</a>' in sections


def test_someone_not_signed_in_gets_the_top_bar_without_switcher_or_account(db: None) -> None:
    make_app(name="orders")
    page = Client().get("/accounts/login/").content.decode()
    assert page.count('<header class="topbar">') == 1
    topbar = _between(page, '<header class="topbar">', "</header>")
    assert '<a class="brand" href="/">' in topbar
    assert "switcher" not in topbar
    assert "orders" not in topbar
    assert "Sign out" not in topbar
