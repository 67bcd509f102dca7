"""StepChange sample DBOS application (dbos 3.2.0).

A small DBOS program that connects to a Conductor-compatible control plane (StepChange by
default) and serves a tiny HTTP page for starting workflows. It is configured only through
environment variables; see README.md next to this file.

Run it with:  python samples/python/app.py
"""

from __future__ import annotations

import html
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID, WorkflowHandle

log = logging.getLogger("sample")

QUEUE_NAME = "greetings"
APPROVAL_TOPIC = "approval"


# --------------------------------------------------------------------------------------------
# Configuration (environment variables only)
# --------------------------------------------------------------------------------------------


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value


def build_config() -> tuple[DBOSConfig, dict[str, Any]]:
    """Read the environment and return (DBOS config, summary safe to log)."""
    app_name = _env("DBOS_APP_NAME", "sample-app") or "sample-app"

    db_url = os.environ.get("DBOS_SYSTEM_DATABASE_URL") or ""
    if not db_url:
        data_dir = Path(_env("STEPCHANGE_DATA_DIR", "var") or "var").resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        db_url = "sqlite:///" + str(data_dir / f"{app_name}.sqlite")

    conductor_url = _env("DBOS_CONDUCTOR_URL", "ws://127.0.0.1:8001").strip()
    conductor_key = os.environ.get("DBOS_CONDUCTOR_KEY") or ""
    if conductor_url and not conductor_key:
        sys.exit(
            "error: DBOS_CONDUCTOR_KEY is required when DBOS_CONDUCTOR_URL is set "
            f"(DBOS_CONDUCTOR_URL={conductor_url}). Set DBOS_CONDUCTOR_KEY, or set "
            "DBOS_CONDUCTOR_URL= (empty) to run without a conductor."
        )

    metadata_raw = os.environ.get("DBOS_EXECUTOR_METADATA") or ""
    metadata: dict[str, Any] = {"sample": "python"}
    if metadata_raw.strip():
        try:
            metadata = json.loads(metadata_raw)
        except json.JSONDecodeError as exc:
            sys.exit(f"error: DBOS_EXECUTOR_METADATA is not valid JSON: {exc}")
        if not isinstance(metadata, dict):
            sys.exit("error: DBOS_EXECUTOR_METADATA must be a JSON object")

    config: DBOSConfig = {
        "name": app_name,
        "system_database_url": db_url,
        "application_version": _env("DBOS_APPLICATION_VERSION", "v1") or "v1",
        "conductor_executor_metadata": metadata,
    }
    schema = os.environ.get("DBOS_SYSTEM_SCHEMA") or ""
    if schema:
        config["dbos_system_schema"] = schema
    if conductor_url:
        config["conductor_url"] = conductor_url
        config["conductor_key"] = conductor_key

    summary = {
        "app_name": app_name,
        "system_database_url": _redact_url(db_url),
        "application_version": config["application_version"],
        "conductor_url": conductor_url or "(none)",
        "conductor_key": "(set)" if conductor_url else "(none)",
        "executor_metadata": metadata,
        "system_schema": schema or "(default)",
    }
    return config, summary


def _redact_url(url: str) -> str:
    """Hide a password in a database URL before logging it."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def poison_disarmed() -> bool:
    return os.environ.get("POISON_DISARMED") == "1"


# --------------------------------------------------------------------------------------------
# Workflows and steps (names are pinned so they stay stable across refactors)
# --------------------------------------------------------------------------------------------


@DBOS.step(name="fetch")
def fetch(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "greeting": "hello",
        "fetched_at": datetime.now(UTC).isoformat(),
    }


@DBOS.step(name="shout")
def shout(profile: dict[str, Any], times: int) -> str:
    name = str(profile["name"])
    if name.startswith("fail"):
        raise ValueError(f"bad input {name}")
    return f"{profile['greeting']} {name}".upper() + "!" * max(times, 1)


@DBOS.step(name="record_audit")
def record_audit(text: str) -> dict[str, Any]:
    return {"length": len(text), "words": len(text.split()), "audited": True}


@DBOS.workflow(name="audit_greeting")
def audit_greeting(text: str) -> dict[str, Any]:
    return record_audit(text)


@DBOS.workflow(name="greet")
def greet(name: str, times: int = 2) -> dict[str, Any]:
    profile = fetch(name)
    if name == "poison" and not poison_disarmed():
        log.warning("poison workflow %s: exiting the process with code 3", DBOS.workflow_id)
        os._exit(3)
    DBOS.set_event("stage", "fetched")
    text = shout(profile, times)
    for i in range(max(times, 1)):
        DBOS.write_stream("progress", {"step": i + 1, "of": max(times, 1), "text": text})
    DBOS.close_stream("progress")
    audit = DBOS.start_workflow(audit_greeting, text).get_result()
    DBOS.set_event("stage", "done")
    return {"greeting": text, "audit": audit}


@DBOS.workflow(name="checkout")
def checkout(name: str, pause: float = 0.2) -> dict[str, Any]:
    """A child workflow, two waits and, for a name starting with "fail", a failed step:
    what a workflow's timeline draws."""
    profile = fetch(name)
    audit = DBOS.start_workflow(audit_greeting, f"checkout {name}").get_result()
    DBOS.sleep(max(pause, 0))
    text = shout(profile, 1)
    return {"greeting": text, "audit": audit}


@DBOS.step(name="request_approval")
def request_approval(reason: str) -> dict[str, Any]:
    return {"reason": reason, "requested_at": datetime.now(UTC).isoformat()}


@DBOS.workflow(name="wait_for_approval")
def wait_for_approval(reason: str = "deploy", timeout_seconds: float = 300) -> dict[str, Any]:
    request = request_approval(reason)
    DBOS.set_event("approval_status", "waiting")
    message = DBOS.recv(APPROVAL_TOPIC, timeout_seconds=timeout_seconds)
    outcome = "timed_out" if message is None else "received"
    DBOS.set_event("approval_status", outcome)
    return {"request": request, "outcome": outcome, "message": message}


@DBOS.step(name="nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@DBOS.step(name="finish")
def finish(seconds: float) -> str:
    return f"slept {seconds:g}s"


@DBOS.workflow(name="tick")
def tick(scheduled_at: datetime, context: Any) -> str:
    """What a dynamic schedule runs (DBOS.create_schedule): it receives its fire time and
    the schedule's context."""
    return f"tick at {scheduled_at.isoformat()} with {context!r}"


@DBOS.workflow(name="slow_task")
def slow_task(seconds: float = 30) -> str:
    half = max(seconds, 0) / 2
    nap(half)  # a step that is itself slow
    DBOS.sleep(half)  # a durable sleep
    return finish(seconds)


def on_alert(name: str, message: str, metadata: dict[str, str]) -> None:
    """The application's own alert handler: StepChange forwards alerts to it (the `alert`
    message) when a rule has an "application" channel. Logged, and appended as a JSON line
    to SAMPLE_ALERTS_FILE when that is set."""
    log.warning("alert %s: %s (%s)", name, message, metadata)
    path = os.environ.get("SAMPLE_ALERTS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"name": name, "message": message, "metadata": metadata}) + "\n")


# --------------------------------------------------------------------------------------------
# HTTP page (standard library only)
# --------------------------------------------------------------------------------------------

INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>StepChange sample app</title></head>
<body>
<h1>StepChange sample app ({app})</h1>
{body}
<h2>Start a workflow</h2>
<ul>
  <li><a href="/?name=world">greet world</a> &middot;
      <a href="/?name=fail1">greet fail1 (ERROR)</a> &middot;
      <a href="/?name=poison">greet poison (crashes the process)</a></li>
  <li><a href="/checkout?name=ada">checkout ada</a> &middot;
      <a href="/checkout?name=fail2">checkout fail2 (a child, a sleep, then ERROR)</a></li>
  <li><a href="/enqueue?name=queued">enqueue greet on the greetings queue</a></li>
  <li><a href="/slow?seconds=30">slow_task for 30 s</a></li>
  <li><a href="/approval">wait_for_approval</a> (then send it a message)</li>
</ul>
<form action="/"><input name="name" value="world"> times <input name="times" value="2" size="2">
  workflow id <input name="workflow_id" placeholder="optional"> <button>greet</button></form>
<form action="/enqueue"><input name="name" value="queued">
  workflow id <input name="workflow_id" placeholder="optional"> <button>enqueue</button></form>
<form action="/slow">seconds <input name="seconds" value="30" size="4">
  workflow id <input name="workflow_id" placeholder="optional"> <button>slow</button></form>
<form action="/approval">timeout <input name="timeout" value="300" size="4">
  workflow id <input name="workflow_id" placeholder="optional"> <button>approval</button></form>
<form action="/send">workflow id <input name="workflow_id">
  message <input name="message" value="approved"> <button>send</button></form>
<form action="/workflow">workflow id <input name="workflow_id"> <button>status</button></form>
</body></html>
"""


class BadRequest(Exception):
    pass


def _describe(workflow_id: str, wait: bool) -> list[str]:
    handle: WorkflowHandle[Any] = DBOS.retrieve_workflow(workflow_id, existing_workflow=True)
    lines = [f"workflow_id: {workflow_id}"]
    if wait:
        try:
            result = handle.get_result()
        except Exception as exc:
            lines += ["status: ERROR", f"error: {type(exc).__name__}: {exc}"]
            return lines
        lines += ["status: SUCCESS", f"result: {json.dumps(result, default=str)}"]
        return lines
    status = handle.get_status()
    lines.append(f"status: {status.status}")
    if status.status == "SUCCESS":
        lines.append(f"result: {json.dumps(status.output, default=str)}")
    elif status.error is not None:
        lines.append(f"error: {type(status.error).__name__}: {status.error}")
    return lines


class Handler(BaseHTTPRequestHandler):
    server_version = "StepChangeSample/1.0"
    # Set by main() before the server starts.
    app_name: str = ""
    queue: Queue | None = None

    def log_message(self, format: str, *args: Any) -> None:
        log.info("http %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/health":
                self._send(200, "ok", "text/plain; charset=utf-8")
                return
            routes = {
                "/": self._greet,
                "/checkout": self._checkout,
                "/enqueue": self._enqueue,
                "/slow": self._slow,
                "/approval": self._approval,
                "/send": self._send_message,
                "/workflow": self._workflow,
            }
            route = routes.get(url.path)
            if route is None:
                self._send(404, "not found", "text/plain; charset=utf-8")
                return
            self._page(route(params))
        except BadRequest as exc:
            self._send(400, f"bad request: {exc}", "text/plain; charset=utf-8")
        except Exception as exc:
            log.exception("request %s failed", self.path)
            self._send(500, f"error: {type(exc).__name__}: {exc}", "text/plain; charset=utf-8")

    # -- routes ---------------------------------------------------------------------------

    def _greet(self, params: dict[str, str]) -> list[str]:
        if "name" not in params:
            return []
        times = _number(params, "times", 2, int)
        with SetWorkflowID(params.get("workflow_id") or _new_id()):
            handle = DBOS.start_workflow(greet, params["name"], times)
        return _describe(handle.workflow_id, wait=True)

    def _checkout(self, params: dict[str, str]) -> list[str]:
        pause = _number(params, "pause", 0.2, float)
        with SetWorkflowID(params.get("workflow_id") or _new_id()):
            handle = DBOS.start_workflow(checkout, params.get("name") or "ada", pause)
        return _describe(handle.workflow_id, wait=True)

    def _enqueue(self, params: dict[str, str]) -> list[str]:
        queue = self.queue
        if queue is None:
            raise RuntimeError(f"queue {QUEUE_NAME} is not registered")
        times = _number(params, "times", 2, int)
        with SetWorkflowID(params.get("workflow_id") or _new_id()):
            handle = queue.enqueue(greet, params.get("name") or "queued", times)
        return [f"queue: {QUEUE_NAME}", *_describe(handle.workflow_id, wait=False)]

    def _slow(self, params: dict[str, str]) -> list[str]:
        seconds = _number(params, "seconds", 30.0, float)
        with SetWorkflowID(params.get("workflow_id") or _new_id()):
            handle = DBOS.start_workflow(slow_task, seconds)
        return _describe(handle.workflow_id, wait=False)

    def _approval(self, params: dict[str, str]) -> list[str]:
        timeout = _number(params, "timeout", 300.0, float)
        reason = params.get("reason") or "deploy"
        with SetWorkflowID(params.get("workflow_id") or _new_id()):
            handle = DBOS.start_workflow(wait_for_approval, reason, timeout)
        wid = handle.workflow_id
        return [
            *_describe(wid, wait=False),
            f'send: <a href="/send?workflow_id={quote(wid)}&amp;message=approved">'
            f"/send?workflow_id={html.escape(wid)}&amp;message=approved</a>",
        ]

    def _send_message(self, params: dict[str, str]) -> list[str]:
        wid = params.get("workflow_id") or ""
        if not wid:
            raise BadRequest("workflow_id is required")
        message = params.get("message") or "approved"
        DBOS.send(wid, message, topic=APPROVAL_TOPIC)
        return [f"sent {message!r} on topic {APPROVAL_TOPIC!r}", *_describe(wid, wait=False)]

    def _workflow(self, params: dict[str, str]) -> list[str]:
        wid = params.get("workflow_id") or ""
        if not wid:
            raise BadRequest("workflow_id is required")
        return _describe(wid, wait=False)

    # -- output ---------------------------------------------------------------------------

    def _page(self, lines: list[str]) -> None:
        body = ""
        if lines:
            # Lines are escaped except the pre-built link line, which escapes its own parts.
            rendered = [
                line if line.startswith("send: <a ") else html.escape(line) for line in lines
            ]
            body = "<pre>" + "\n".join(rendered) + "</pre>"
        self._send(
            200, INDEX.format(app=html.escape(self.app_name), body=body), "text/html; charset=utf-8"
        )

    def _send(self, code: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _new_id() -> str:
    return str(uuid.uuid4())


def _number(params: dict[str, str], key: str, default: Any, kind: type) -> Any:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise BadRequest(f"{key} must be a number") from exc


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config, summary = build_config()
    for key, value in summary.items():
        log.info("config %s=%s", key, value)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    DBOS(config=config)
    DBOS.alert_handler(on_alert)
    DBOS.launch()
    # In dbos 3.2.0 queues are registered after launch; constructing Queue directly raises.
    Handler.queue = DBOS.register_queue(QUEUE_NAME)
    Handler.app_name = config["name"]

    host = _env("SAMPLE_HTTP_HOST", "127.0.0.1") or "127.0.0.1"
    port = int(_env("SAMPLE_HTTP_PORT", "8000") or "8000")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sample-http", daemon=True).start()
    log.info("HTTP page at http://%s:%s/", host, port)

    while not stop.wait(1.0):
        pass

    server.shutdown()
    server.server_close()
    DBOS.destroy()
    log.info("stopped")


if __name__ == "__main__":
    main()
