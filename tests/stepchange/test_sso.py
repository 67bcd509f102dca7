"""Single sign-on against a real OpenID Connect provider (tests/sso/provider/, started on
127.0.0.1): StepChange runs in the test's process and its backend talks to the provider over
HTTP; the browser's part (the provider's sign-in form, its redirects) is played by a
requests session.

Olga is an operator of `orders` at the provider; Bob is a provider user StepChange grants
nothing; Mallory tampers with the answers. Every refusal is a page that says why, one
audit record, and no user made.
"""

import html
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.contrib.auth.models import Group, User
from django.test import Client

from stepchange import sso
from stepchange.models import ApplicationAccess, AuditRecord, SsoIdentity
from tests.conftest import PASSWORD, make_app, make_user
from tests.e2e.servers import free_port
from tests.sso.fixtures import (
    OTHER_CLIENT,
    OTHER_SECRET,
    STEPCHANGE_CLIENT,
    STEPCHANGE_SECRET,
    Provider,
)

pytestmark = pytest.mark.e2e

CALLBACK = "/accounts/sso/callback/"
REDIRECT = f"http://testserver{CALLBACK}"
ROLE_MAP = {
    "sc-admins": "admin",
    "sc-operators": "operator",
    "sc-viewers": "viewer",
    "sc-auditors": "auditors",
}


@pytest.fixture(scope="module")
def provider(sso_provider: Provider) -> Provider:
    sso_provider.client(STEPCHANGE_CLIENT, STEPCHANGE_SECRET, REDIRECT)
    sso_provider.client(OTHER_CLIENT, OTHER_SECRET, REDIRECT)
    return sso_provider


@pytest.fixture
def configured(settings: Any, provider: Provider, db: None) -> Provider:
    settings.OIDC_ISSUER = provider.issuer
    settings.SSO_ENABLED = True
    settings.SSO_PROVIDER_NAME = "Test IdP"
    settings.OIDC_RP_CLIENT_ID = STEPCHANGE_CLIENT
    settings.OIDC_RP_CLIENT_SECRET = STEPCHANGE_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile stepchange"
    settings.SSO_ROLE_CLAIM = "stepchange_roles"
    settings.SSO_ROLE_MAP = ROLE_MAP
    settings.SSO_APPLICATION_CLAIM = "stepchange_apps"
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "stepchange.sso.SsoBackend",
    ]
    make_app(name="orders")
    make_app(name="billing")
    # A custom role: a group of StepChange's that the claims name.
    Group.objects.create(name="auditors")
    return provider


@dataclass
class Flow:
    """A sign-in started at StepChange and taken as far as the provider's authorize URL."""

    client: Client
    authorize_url: str

    @property
    def params(self) -> dict[str, str]:
        return {
            key: values[0] for key, values in parse_qs(urlsplit(self.authorize_url).query).items()
        }


def start(client: Client | None = None) -> Flow:
    client = client or Client()
    response = client.get("/accounts/sso/start/")
    assert response.status_code == 302, response.content
    return Flow(client, response["Location"])


def provider_session(provider: Provider, username: str, password: str) -> requests.Session:
    """A browser signed in at the provider."""
    session = requests.Session()
    session.get(f"{provider.url}/login/", timeout=10).raise_for_status()
    answer = session.post(
        f"{provider.url}/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["idp_csrftoken"],
        },
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return session


def authorize(session: requests.Session, url: str) -> dict[str, str]:
    """The provider's answer to an authorization request: the callback's query."""
    answer = session.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def sign_in(provider: Provider, username: str, password: str, client: Client | None = None) -> Any:
    flow = start(client)
    query = authorize(provider_session(provider, username, password), flow.authorize_url)
    response: Any = flow.client.get(CALLBACK, query)
    return response


def refusal(action: str = "auth.sso_refused") -> AuditRecord:
    [record] = AuditRecord.objects.filter(action=action)
    assert record.result == AuditRecord.Result.DENIED
    return record


def text(response: Any) -> str:
    return html.unescape(response.content.decode())


# A first sign-in, and the next ones.


def test_a_first_sign_in_makes_the_user_with_the_claimed_role_and_applications(
    configured: Provider,
) -> None:
    configured.user("olga", "olga-pass", roles="sc-operators", apps="orders")
    response = sign_in(configured, "olga", "olga-pass")
    assert response.status_code == 302
    assert response["Location"] == "/"

    olga = User.objects.get(username="olga")
    assert [g.name for g in olga.groups.all()] == ["operator"]
    access = ApplicationAccess.objects.get(user=olga)
    assert access.limited
    assert [a.name for a in access.applications.all()] == ["orders"]
    assert not olga.has_usable_password()
    identity = SsoIdentity.objects.get(user=olga)
    assert identity.issuer == configured.issuer
    created = AuditRecord.objects.get(action="user.sso_create")
    assert created.parameters["roles"] == ["operator"]
    assert created.parameters["applications"] == ["orders"]
    assert AuditRecord.objects.filter(action="auth.login", actor=olga).count() == 1

    # She is signed in, sees `orders` and not `billing`.
    home = response.client.get("/")
    assert home.status_code == 200
    assert b'id="app-orders"' in home.content
    assert b'id="app-billing"' not in home.content
    assert response.client.get("/apps/billing/").status_code == 404


def test_a_role_changed_upstream_is_changed_at_the_next_sign_in(configured: Provider) -> None:
    configured.user("olga", "olga-pass", roles="sc-operators", apps="orders")
    sign_in(configured, "olga", "olga-pass")
    configured.user("olga", "olga-pass", roles="sc-viewers,sc-auditors", apps="*")
    response = sign_in(configured, "olga", "olga-pass")
    assert response.status_code == 302

    olga = User.objects.get(username="olga")
    assert sorted(g.name for g in olga.groups.all()) == ["auditors", "viewer"]
    # "*": every application, so no limiting row.
    assert not ApplicationAccess.objects.filter(user=olga).exists()
    change = AuditRecord.objects.get(action="user.sso_access")
    assert change.value_diff == {
        "before": {"roles": ["operator"], "applications": ["orders"]},
        "after": {"roles": ["auditors", "viewer"], "applications": "all"},
    }
    # One user, one identity: the second sign-in found her by her subject.
    assert User.objects.filter(username="olga").count() == 1
    assert SsoIdentity.objects.count() == 1


def test_without_a_role_map_claim_values_name_groups_themselves(
    configured: Provider, settings: Any
) -> None:
    settings.SSO_ROLE_MAP = {}
    configured.user("ida", "ida-pass", roles="auditors,no-such-group", apps="orders")
    assert sign_in(configured, "ida", "ida-pass").status_code == 302
    assert [g.name for g in User.objects.get(username="ida").groups.all()] == ["auditors"]


def test_a_user_whose_roles_are_all_withdrawn_is_refused_and_loses_them(
    configured: Provider,
) -> None:
    configured.user("olga", "olga-pass", roles="sc-operators", apps="orders")
    sign_in(configured, "olga", "olga-pass")
    configured.user("olga", "olga-pass", roles="", apps="orders")
    client = Client()
    response = sign_in(configured, "olga", "olga-pass", client)

    assert response.status_code == 403
    assert "grants no StepChange role" in text(response)
    olga = User.objects.get(username="olga")
    assert not olga.groups.exists()
    assert refusal().actor_name == "olga"
    # Not signed in: the home page sends her to sign in.
    assert client.get("/").status_code == 302


# Refusals that create nothing.


def test_a_claim_that_maps_to_no_role_is_refused_and_makes_no_user(configured: Provider) -> None:
    configured.user("bob", "bob-pass", roles="sc-unknown", apps="orders")
    response = sign_in(configured, "bob", "bob-pass")
    assert response.status_code == 403
    assert "Your Test IdP account grants no StepChange role" in text(response)
    assert "no account was made" in text(response)
    assert not User.objects.filter(username="bob").exists()
    assert not SsoIdentity.objects.exists()
    record = refusal()
    assert "stepchange_roles" in record.detail


def test_a_role_without_an_application_is_refused_and_makes_no_user(configured: Provider) -> None:
    configured.user("bob", "bob-pass", roles="sc-viewers", apps="")
    response = sign_in(configured, "bob", "bob-pass")
    assert response.status_code == 403
    assert "grants no StepChange application" in text(response)
    assert not User.objects.filter(username="bob").exists()
    refusal()


def test_a_name_taken_by_a_password_account_is_refused_and_not_taken_over(
    configured: Provider,
) -> None:
    make_user(username="olga", role="admin")
    configured.user("olga", "olga-pass", roles="sc-viewers", apps="orders")
    response = sign_in(configured, "olga", "olga-pass")
    assert response.status_code == 403
    assert "already exists and signs in with a password" in text(response)
    assert not SsoIdentity.objects.exists()
    assert [g.name for g in User.objects.get(username="olga").groups.all()] == ["admin"]
    refusal()


def test_a_forged_state_is_refused(configured: Provider) -> None:
    configured.user("olga", "olga-pass", roles="sc-operators", apps="orders")
    flow = start()
    query = authorize(provider_session(configured, "olga", "olga-pass"), flow.authorize_url)
    response = flow.client.get(CALLBACK, {**query, "state": "mallory-made-this-up"})
    assert response.status_code == 400
    assert sso.NOT_VERIFIED in text(response)
    assert "state" in refusal().detail
    nothing_made()


def test_a_callback_no_sign_in_started_is_refused(configured: Provider) -> None:
    response = Client().get(CALLBACK, {"code": "stolen", "state": "stolen"})
    assert response.status_code == 400
    assert "did not start a sign-in" in text(response)
    refusal()
    assert not User.objects.exists()


def test_a_forged_nonce_is_refused(configured: Provider) -> None:
    # Mallory sends the provider the browser's state with a nonce of her own: the token
    # comes back with her nonce, not the one this sign-in stored.
    configured.user("olga", "olga-pass", roles="sc-operators", apps="orders")
    flow = start()
    params = {**flow.params, "nonce": "mallorys-nonce"}
    forged = f"{flow.authorize_url.split('?')[0]}?{urlencode(params)}"
    query = authorize(provider_session(configured, "olga", "olga-pass"), forged)
    response = flow.client.get(CALLBACK, query)
    assert response.status_code == 400
    assert sso.NOT_VERIFIED in text(response)
    assert "Nonce" in refusal().detail
    nothing_made()


def test_a_code_issued_to_another_application_is_not_accepted(configured: Provider) -> None:
    configured.user("olga", "olga-pass", roles="sc-operators", apps="orders")
    flow = start()
    params = {**flow.params, "client_id": OTHER_CLIENT}
    other = f"{flow.authorize_url.split('?')[0]}?{urlencode(params)}"
    query = authorize(provider_session(configured, "olga", "olga-pass"), other)
    response = flow.client.get(CALLBACK, query)
    assert response.status_code == 400
    assert sso.CODE_NOT_ACCEPTED in text(response)
    refusal()
    assert not User.objects.filter(username="olga").exists()


class Forgery:
    """Mallory's side of Olga's sign-in: real tokens the provider issued to another client
    with this sign-in's nonce, re-signed with the provider's key as a test needs, and the
    callback answered with them instead of the token endpoint's answer."""

    def __init__(self, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
        provider.user("olga", "olga-pass", roles="sc-operators", apps="orders")
        self.provider = provider
        self.monkeypatch = monkeypatch
        self.flow = start()

    def other_applications_tokens(self) -> dict[str, Any]:
        params = {**self.flow.params, "client_id": OTHER_CLIENT}
        params.pop("code_challenge")
        params.pop("code_challenge_method")
        other = f"{self.flow.authorize_url.split('?')[0]}?{urlencode(params)}"
        query = authorize(provider_session(self.provider, "olga", "olga-pass"), other)
        answer = requests.post(
            f"{self.provider.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": REDIRECT,
                "client_id": OTHER_CLIENT,
                "client_secret": OTHER_SECRET,
            },
            timeout=10,
        )
        answer.raise_for_status()
        tokens: dict[str, Any] = answer.json()
        tokens["state"] = query["state"]
        return tokens

    def resigned(self, **claims: Any) -> dict[str, Any]:
        """Another client's tokens, its ID token's claims changed and signed again with
        the provider's own key (so only the changed claims can be what is refused)."""
        tokens = self.other_applications_tokens()
        tokens["id_token"] = self.provider.sign({**_claims(tokens["id_token"]), **claims})
        return tokens

    def callback(self, tokens: dict[str, Any]) -> Any:
        """The callback, its code exchanged for `tokens` instead of at the token endpoint."""

        def token_endpoint(backend: Any, payload: dict[str, Any]) -> dict[str, Any]:
            return {"id_token": tokens["id_token"], "access_token": tokens["access_token"]}

        self.monkeypatch.setattr(sso.SsoBackend, "get_token", token_endpoint)
        response: Any = self.flow.client.get(CALLBACK, {"code": "any", "state": tokens["state"]})
        return response


@pytest.fixture
def mallory(configured: Provider, monkeypatch: pytest.MonkeyPatch) -> Forgery:
    return Forgery(configured, monkeypatch)


def nothing_made() -> None:
    """A refused sign-in leaves no user and no SSO identity behind."""
    assert not User.objects.filter(username="olga").exists()
    assert not SsoIdentity.objects.exists()


def test_an_id_token_for_another_audience_is_refused(mallory: Forgery) -> None:
    response = mallory.callback(mallory.other_applications_tokens())
    assert response.status_code == 403
    assert sso.WRONG_AUDIENCE in text(response)
    assert OTHER_CLIENT in refusal().detail
    nothing_made()


def _claims(token: str) -> dict[str, Any]:
    import jwt

    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_an_expired_id_token_is_refused(mallory: Forgery) -> None:
    # The provider's own token, for StepChange, expired an hour ago, signed with its key.
    hour_ago = int(time.time()) - 3600
    tokens = mallory.resigned(aud=STEPCHANGE_CLIENT, exp=hour_ago, iat=hour_ago - 600)
    response = mallory.callback(tokens)
    assert response.status_code == 403
    assert sso.EXPIRED in text(response)
    refusal()
    nothing_made()


def test_a_token_from_another_issuer_is_refused(mallory: Forgery) -> None:
    response = mallory.callback(mallory.resigned(aud=STEPCHANGE_CLIENT, iss="http://mallory"))
    assert response.status_code == 403
    assert sso.WRONG_ISSUER in text(response)
    refusal()
    nothing_made()


def test_a_token_with_a_tampered_claim_fails_its_signature(mallory: Forgery) -> None:
    tokens = mallory.other_applications_tokens()
    # The audience rewritten in the token's body, its signature left as the provider made it.
    header, _, signature = tokens["id_token"].split(".")
    body = mallory.provider.sign({**_claims(tokens["id_token"]), "aud": STEPCHANGE_CLIENT})
    tokens["id_token"] = ".".join([header, body.split(".")[1], signature])
    response = mallory.callback(tokens)
    assert response.status_code == 403
    assert "Signature verification failed" in text(response)
    refusal()
    nothing_made()


def test_the_providers_own_refusal_is_shown(configured: Provider) -> None:
    flow = start()
    response = flow.client.get(
        CALLBACK,
        {
            "error": "access_denied",
            "error_description": "the user said no",
            "state": flow.params["state"],
        },
    )
    assert response.status_code == 403
    assert "the user said no" in text(response)
    refusal()


def test_a_provider_that_cannot_be_reached_is_a_clear_page(
    configured: Provider, settings: Any
) -> None:
    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/nobody"
    response = Client().get("/accounts/sso/start/")
    assert response.status_code == 502
    assert sso.PROVIDER_UNREACHABLE in text(response)
    assert "nobody" in refusal().detail


# The sign-in page.


def test_the_sign_in_page_offers_the_provider_beside_the_password_form(
    configured: Provider,
) -> None:
    page = text(Client().get("/accounts/login/?next=/apps/orders/"))
    assert "Sign in with Test IdP" in page
    assert "/accounts/sso/start/?next=/apps/orders/" in page
    assert 'name="password"' in page


def test_without_single_sign_on_there_is_no_button_and_no_route(db: None) -> None:
    assert "Sign in with" not in text(Client().get("/accounts/login/"))
    assert Client().get("/accounts/sso/start/").status_code == 404
    assert Client().get(CALLBACK, {"code": "x", "state": "y"}).status_code == 404


def test_with_the_password_form_off_only_a_superuser_signs_in_with_a_password(
    configured: Provider, settings: Any
) -> None:
    settings.PASSWORD_LOGIN = False
    page = text(Client().get("/accounts/login/"))
    assert "Sign in with Test IdP" in page
    assert 'name="password"' not in page

    ada = make_user(username="ada", role="admin")
    ada.is_staff = True
    ada.save()
    refused = Client().post("/accounts/login/?password", {"username": "ada", "password": PASSWORD})
    assert refused.status_code == 401
    assert "Password sign-in is turned off: sign in with Test IdP" in text(refused)
    record = AuditRecord.objects.get(action="auth.login_failed")
    assert (record.actor_name, record.result) == ("ada", "denied")
    assert "turned off" in record.detail
    admin_login = Client().post("/admin/login/", {"username": "ada", "password": PASSWORD})
    assert "Password sign-in is turned off" in text(admin_login)

    # The superuser's way in when the provider is down.
    User.objects.create_superuser("root", password=PASSWORD)
    emergency = Client()
    assert 'name="password"' in text(emergency.get("/accounts/login/?password"))
    answer = emergency.post("/accounts/login/?password", {"username": "root", "password": PASSWORD})
    assert answer.status_code == 302
    assert emergency.get("/").status_code == 200
