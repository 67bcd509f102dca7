"""Where alerts go: checking a channel's address, shaping each kind's message, and sending
one. A webhook's JSON body is signed with HMAC-SHA256 under the channel's secret; Slack
gets an incoming-webhook text, PagerDuty an Events API v2 event, email goes through
Django's mail settings, and an application's own handler gets the `alert` message
(PROTOCOL.md §2.2) through the relay."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.http import HttpRequest
from django.http.request import split_domain_port

from alerts.models import AlertChannel
from conductor import relay
from conductor.protocol import AlertRequest
from stepchange.models import Application

Kind = AlertChannel.Kind

SIGNATURE_HEADER = "X-StepChange-Signature"
TIMESTAMP_HEADER = "X-StepChange-Timestamp"
EVENT_HEADER = "X-StepChange-Event"
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SEND_TIMEOUT_SECONDS = 10
ERROR_CHARS = 1000

NOT_HTTP = "The URL must start with http:// or https:// and name a host; got {url!r}."
POINTS_HERE = (
    "The URL points at StepChange itself ({netloc}: {why}): an alert sent there would come "
    "back as a request to StepChange, not reach anyone."
)
# Why a URL is StepChange's own, most specific first.
HERE_REQUEST = "the host and port this request came to"
HERE_SITE_URL = "SITE_URL's host and port"
HERE_ALLOWED_HOST = "{host} is one of ALLOWED_HOSTS, and {port} is StepChange's port"
HERE_LOOPBACK = "a loopback address at StepChange's port {port}"
URL_REQUIRED = "A {kind} channel needs a URL."
SECRET_REQUIRED = "A PagerDuty channel needs the integration's routing key."
RECIPIENTS_REQUIRED = "An email channel needs at least one recipient."
BAD_RECIPIENT = "Not an email address: {address!r}."
URL_NOT_USED = "This kind of channel takes no URL."

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class ChannelError(ValueError):
    """A channel refused: the message says why."""


class SendError(Exception):
    """A channel did not take a message; retried later."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _port(scheme: str, port: int | None) -> int:
    return port or (443 if scheme == "https" else 80)


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _host_port(host: str, port: int | None, scheme: str) -> tuple[str, int]:
    return host.strip("[]").lower(), _port(scheme, port)


def _request_address(request: HttpRequest) -> tuple[str, int]:
    """The host and port the request was sent to (its Host header, validated against
    ALLOWED_HOSTS by Django)."""
    domain, port = split_domain_port(request.get_host())
    return _host_port(domain, int(port) if port else None, request.scheme or "http")


def _allowed_hosts() -> set[str]:
    """The names of ALLOWED_HOSTS that name one host: not `*`, nor a `.example.com`
    pattern of every subdomain."""
    return {
        entry.strip("[]").lower()
        for entry in settings.ALLOWED_HOSTS
        if entry and entry != "*" and not entry.startswith(".")
    }


def _points_here(host: str, port: int, request: HttpRequest | None) -> str | None:
    """Why `host`:`port` is StepChange itself, or None. Its ports: SITE_URL's and, during a
    request, the one the request came to and the one the server accepted it on (behind a
    proxy, they differ)."""
    site = urlsplit(settings.SITE_URL)
    site_address = _host_port(site.hostname or "", site.port, site.scheme)
    ports = {site_address[1]}
    if request is not None:
        request_address = _request_address(request)
        if (host, port) == request_address:
            return HERE_REQUEST
        ports.add(request_address[1])
        server_port = str(request.META.get("SERVER_PORT", ""))
        if server_port.isdigit():
            ports.add(int(server_port))
    # A loopback SITE_URL is every loopback name at its port (127.0.0.1 is localhost).
    both_loopback = _loopback(host) and _loopback(site_address[0])
    if (host, port) == site_address or (both_loopback and port == site_address[1]):
        return HERE_SITE_URL
    if port not in ports:
        return None
    if host in _allowed_hosts() and not _loopback(host):
        return HERE_ALLOWED_HOST.format(host=host, port=port)
    if _loopback(host):
        return HERE_LOOPBACK.format(port=port)
    return None


def url_check(url: str, *, request: HttpRequest | None = None) -> str:
    """`url` if alerts may be sent there: http(s) with a host, and not StepChange itself
    (`_points_here`: SITE_URL, ALLOWED_HOSTS and loopback addresses at StepChange's ports,
    the address of `request`). ChannelError says why not."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ChannelError(NOT_HTTP.format(url=url)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChannelError(NOT_HTTP.format(url=url))
    host, target_port = _host_port(parts.hostname, port, parts.scheme)
    why = _points_here(host, target_port, request)
    if why is not None:
        raise ChannelError(POINTS_HERE.format(netloc=parts.netloc, why=why))
    return url


def channel_clean(
    *,
    kind: str,
    url: str = "",
    secret: str = "",
    recipients: str = "",
    request: HttpRequest | None = None,
) -> dict[str, str]:
    """A channel's fields, checked for its kind (a URL against where `request` came to,
    too); ChannelError says what is wrong."""
    url, secret, recipients = url.strip(), secret.strip(), recipients.strip()
    if kind in (Kind.WEBHOOK, Kind.SLACK):
        if not url:
            raise ChannelError(URL_REQUIRED.format(kind=Kind(kind).label))
        url = url_check(url, request=request)
        if kind == Kind.WEBHOOK and not secret:
            secret = new_secret()
    elif kind == Kind.PAGERDUTY:
        url = url_check(url or PAGERDUTY_URL, request=request)
        if not secret:
            raise ChannelError(SECRET_REQUIRED)
    elif kind == Kind.EMAIL:
        addresses = [a.strip() for a in recipients.split(",") if a.strip()]
        if not addresses:
            raise ChannelError(RECIPIENTS_REQUIRED)
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ChannelError(BAD_RECIPIENT.format(address=address)) from None
        recipients = ", ".join(addresses)
        if url:
            raise ChannelError(URL_NOT_USED)
    elif kind == Kind.APPLICATION:
        if url:
            raise ChannelError(URL_NOT_USED)
    else:
        raise ChannelError(f"Unknown channel kind {kind!r}.")
    return {"url": url, "secret": secret, "recipients": recipients}


# Signing.


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the HMAC-SHA256 of the body, in hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, body), header or "")


# Shapes.


def _slack(message: dict[str, Any]) -> dict[str, Any]:
    state = message["event"].upper()
    link = message.get("link") or ""
    text = f"[{state}] {message['application']}: {message['summary']}"
    if link:
        text += f" <{link}|Open in StepChange>"
    return {"text": text}


def _pagerduty(channel: AlertChannel, message: dict[str, Any]) -> dict[str, Any]:
    action = "resolve" if message["event"] == "resolved" else "trigger"
    body: dict[str, Any] = {
        "routing_key": channel.secret,
        "event_action": action,
        "dedup_key": message["dedup_key"],
    }
    if action == "trigger":
        body["payload"] = {
            "summary": f"{message['application']}: {message['summary']}"[:1024],
            "source": f"stepchange/{message['application']}",
            "severity": "error",
            "timestamp": message["sent_at"],
            "custom_details": message.get("details") or {},
        }
        if message.get("link"):
            body["links"] = [{"href": message["link"], "text": "Open in StepChange"}]
    return body


def _email_text(message: dict[str, Any]) -> tuple[str, str]:
    subject = f"[StepChange {message['event']}] {message['application']}: {message['summary']}"
    lines = [
        message["summary"],
        "",
        f"Application: {message['application']}",
        f"Rule: {message['rule']['name']}",
        f"State: {message['event']}",
    ]
    if message.get("link"):
        lines += ["", f"Open in StepChange: {message['link']}"]
    return subject[:200], "\n".join(lines) + "\n"


# Sending.


def _post(url: str, body: bytes, headers: dict[str, str]) -> None:
    try:
        answer = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=SEND_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise SendError(f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]) from None
    if not 200 <= answer.status_code < 300:
        raise SendError(f"HTTP {answer.status_code}: {answer.text[:300]}"[:ERROR_CHARS])


async def send(channel: AlertChannel, application: Application, message: dict[str, Any]) -> None:
    """Send `message` through `channel`; SendError (or a relay error) when it was not taken."""
    if channel.kind == Kind.WEBHOOK:
        body = json.dumps(message, sort_keys=True).encode()
        headers = {
            SIGNATURE_HEADER: signature(channel.secret, body),
            TIMESTAMP_HEADER: str(int(time.time())),
            EVENT_HEADER: message["event"],
        }
        await asyncio.to_thread(_post, channel.url, body, headers)
    elif channel.kind == Kind.SLACK:
        await asyncio.to_thread(_post, channel.url, json.dumps(_slack(message)).encode(), {})
    elif channel.kind == Kind.PAGERDUTY:
        body = json.dumps(_pagerduty(channel, message)).encode()
        await asyncio.to_thread(_post, channel.url, body, {})
    elif channel.kind == Kind.EMAIL:
        subject, text = _email_text(message)
        recipients = [a.strip() for a in channel.recipients.split(",") if a.strip()]
        try:
            await asyncio.to_thread(
                send_mail, subject, text, settings.DEFAULT_FROM_EMAIL, recipients
            )
        except Exception as exc:  # SMTP and socket errors alike: retried.
            raise SendError(f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]) from None
    elif channel.kind == Kind.APPLICATION:
        metadata = {
            "event": message["event"],
            "rule": message["rule"]["name"],
            "kind": message["rule"]["kind"],
            "key": message["alert"]["key"],
            "link": message.get("link") or "",
        }
        try:
            await relay.request(
                application,
                AlertRequest(
                    name=message["rule"]["name"],
                    message=message["summary"],
                    metadata=metadata,
                ),
                actor_name="stepchange (alerts)",
                source="alerts",
            )
        except relay.RelayError as exc:
            raise SendError(str(exc)[:ERROR_CHARS]) from None
    else:
        raise SendError(f"Unknown channel kind {channel.kind!r}.")
