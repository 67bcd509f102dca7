"""Olga signs in to a live StepChange through a real OpenID Connect provider (tests/sso/
provider/, on 127.0.0.1), in Chromium: her role and applications come from the provider's
claims, change when they change there, and when the provider stops granting her a role she
is turned away with a page that says why. The sign-in page and the refusal pass axe-core."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_accessibility import AXE, assert_accessible
from tests.e2e.servers import StepChange
from tests.sso.fixtures import STEPCHANGE_CLIENT, STEPCHANGE_SECRET, Provider

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def console(
    sso_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StepChange]:
    server = StepChange(
        tmp_path_factory.mktemp("stepchange-sso"),
        env={
            "OIDC_ISSUER": sso_provider.issuer,
            "OIDC_PROVIDER_NAME": "Test IdP",
            "OIDC_CLIENT_ID": STEPCHANGE_CLIENT,
            "OIDC_CLIENT_SECRET": STEPCHANGE_SECRET,
            "OIDC_SCOPES": "openid email profile stepchange",
            "OIDC_ROLE_CLAIM": "stepchange_roles",
            "OIDC_ROLE_MAP": "sc-operators=operator,sc-viewers=viewer",
            "OIDC_APPLICATION_CLAIM": "stepchange_apps",
        },
    )
    sso_provider.client(
        STEPCHANGE_CLIENT, STEPCHANGE_SECRET, f"{server.url}/accounts/sso/callback/"
    )
    server.start()
    server.manage("register_app", "orders")
    server.manage("register_app", "billing")
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # bypass_csp: axe is injected as an inline script, which the console's CSP forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    yield context.new_page()
    context.close()


def sign_in_through_the_provider(page: Page, console: StepChange, *, first: bool) -> None:
    page.goto(f"{console.url}/accounts/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    if first:
        # The provider's own form, once: after that its session signs her in at once.
        page.get_by_label("Provider username").fill("olga")
        page.get_by_label("Provider password").fill("olga-pass")
        page.get_by_role("button", name="Continue").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to StepChange")).to_be_visible()


def test_olga_signs_in_through_the_provider_and_her_access_follows_its_claims(
    page: Page, console: StepChange, sso_provider: Provider
) -> None:
    if not AXE.exists():
        pytest.skip(f"{AXE} is missing: run `npm ci`")
    sso_provider.user("olga", "olga-pass", roles="sc-operators", apps="orders")

    page.goto(f"{console.url}/accounts/login/")
    expect(page.get_by_role("link", name="Sign in with Test IdP")).to_be_visible()
    expect(page.get_by_label("Password")).to_be_visible()
    screenshot(page, "sso-sign-in")
    assert_accessible(page, "sign-in page with single sign-on")

    # First sign-in: an operator of orders, who does not see billing.
    sign_in_through_the_provider(page, console, first=True)
    expect(page.get_by_role("heading", name="Applications")).to_be_visible()
    expect(page.locator(".account .role")).to_have_text("operator")
    expect(page.locator("#app-orders")).to_be_visible()
    expect(page.locator("#app-billing")).to_have_count(0)
    # No password of her own to change.
    expect(page.get_by_role("link", name="Password")).to_have_count(0)
    response = page.goto(f"{console.url}/apps/billing/")
    assert response is not None
    assert response.status == 404
    page.goto(f"{console.url}/")
    sign_out(page)

    # Upstream she becomes a viewer of both: so she is, at her next sign-in.
    sso_provider.user("olga", "olga-pass", roles="sc-viewers", apps="orders,billing")
    sign_in_through_the_provider(page, console, first=False)
    expect(page.get_by_role("heading", name="Applications")).to_be_visible()
    expect(page.locator(".account .role")).to_have_text("viewer")
    expect(page.locator("#app-billing")).to_be_visible()
    sign_out(page)

    # Upstream her role is withdrawn: turned away, and the role is gone here too.
    sso_provider.user("olga", "olga-pass", roles="", apps="orders,billing")
    sign_in_through_the_provider(page, console, first=False)
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    expect(page.get_by_text("Your Test IdP account grants no StepChange role")).to_be_visible()
    screenshot(page, "sso-refused")
    assert_accessible(page, "sign-in refused")
    page.goto(f"{console.url}/")
    expect(page.get_by_role("heading", name="Sign in to StepChange")).to_be_visible()
    roles = console.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "print(list(User.objects.get(username='olga').groups.values_list('name', flat=True)))",
    )
    assert roles.strip().splitlines()[-1] == "[]"
