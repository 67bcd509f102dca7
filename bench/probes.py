"""The security review's twenty findings, replayed against a real StepChange as an attacker
would replay them (issue "Hardening", its Measure: 0 of 20 reproduce).

    .venv/bin/python bench/probes.py [--only N ...]

Starts StepChange under Daphne with a throwaway Postgres app database, registers three
applications (one with a throwaway Postgres system database and a real Python executor),
makes the personas (a superuser, an admin limited to one application, a viewer, a user
with no role), then runs each probe and prints one line per finding: what it tried,
"reproduces" or "fixed", and the evidence. A probe that needs more than this script
sets up says "not probed" and why. Exits 1 if any finding reproduces.

The throttle probes (16) run last: they lock this machine's address out.
"""

import argparse
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from tests.e2e.servers import Executor, PostgresDatabases, StepChange  # noqa: E402

PASSWORD = "probe-" + uuid.uuid4().hex
RUN = uuid.uuid4().hex[:6]
ALPHA, BETA, GAMMA = f"alpha-{RUN}", f"beta-{RUN}", f"gamma-{RUN}"
KEYS = {name: f"key-{uuid.uuid4().hex}" for name in (ALPHA, BETA, GAMMA)}
USERS = ("root", "lim", "vic", "sam")
# Each probe answers (reproduces, evidence); reproduces is None when it was not probed.
Outcome = tuple[bool | None, str]

PERSONAS = """
import json
from django.contrib.auth.models import Group, User
from stepchange.models import Application, ApplicationAccess, ExecutorKey
password = {password!r}
root = User.objects.create_superuser("root", password=password)
lim = User.objects.create_user("lim", password=password)
lim.groups.add(Group.objects.get(name="admin"))
access = ApplicationAccess.objects.create(user=lim, limited=True)
access.applications.add(Application.objects.get(name={alpha!r}))
User.objects.create_user("vic", password=password).groups.add(Group.objects.get(name="viewer"))
User.objects.create_user("sam", password=password)
keys = {{k.application.name: k.pk for k in ExecutorKey.objects.select_related("application")}}
print(json.dumps({{"lim": lim.pk, "root": root.pk, "keys": keys}}))
"""


class RawExecutor(threading.Thread):
    """Just enough of an executor: answers executor_info, then every request with an empty
    success (`answer`), or never (`answer=False`)."""

    def __init__(self, url: str, *, executor_id: str = "", answer: bool = True) -> None:
        super().__init__(daemon=True)
        self.socket = connect(url, max_size=None, open_timeout=10)
        self.executor_id = executor_id or f"raw-{uuid.uuid4().hex[:6]}"
        self.answer = answer
        self.closed = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            for frame in self.socket:
                message = json.loads(frame)
                kind, request_id = message.get("type"), message.get("request_id")
                reply: dict[str, Any] = {"type": kind, "request_id": request_id}
                if kind == "executor_info":
                    reply |= {"executor_id": self.executor_id, "application_version": "v1"}
                    reply |= {"hostname": "probe", "language": "python"}
                elif not self.answer:
                    continue
                elif kind == "get_workflow":
                    workflow = {"WorkflowUUID": message.get("workflow_id"), "Status": "PENDING"}
                    reply |= {"output": workflow, "error_message": None}
                else:
                    reply |= {"output": [], "success": True, "error_message": None}
                self.socket.send(json.dumps(reply))
        except (ConnectionClosed, OSError):
            pass
        self.closed.set()

    def send(self, message: dict[str, Any]) -> None:
        self.socket.send(json.dumps(message))

    def close(self) -> None:
        self.socket.close()


class Probes:
    def __init__(self, server: StepChange, ids: dict[str, Any], executor: Executor | None):
        self.server = server
        self.ids = ids
        self.executor = executor
        self.tokens = {name: server.manage("create_api_token", name).strip() for name in USERS}
        self.sessions: dict[str, requests.Session] = {}

    # -- helpers ----------------------------------------------------------------------

    def api(
        self, who: str, method: str, path: str, *, data: Any = None, raw: bytes | None = None
    ) -> requests.Response:
        body = raw if raw is not None else (None if data is None else json.dumps(data).encode())
        return requests.request(
            method,
            f"{self.server.url}/api/v1{path}",
            data=body,
            headers={
                "Authorization": f"Bearer {self.tokens[who]}",
                "Content-Type": "application/json",
            },
            timeout=60,
        )

    def session(self, who: str) -> requests.Session:
        if who not in self.sessions:
            session = requests.Session()
            session.get(f"{self.server.url}/accounts/login/", timeout=10)
            answer = session.post(
                f"{self.server.url}/accounts/login/",
                data={"username": who, "password": PASSWORD, **self.csrf(session)},
                timeout=10,
            )
            assert answer.ok, f"{who} could not sign in: {answer.status_code}"
            self.sessions[who] = session
        return self.sessions[who]

    def csrf(self, session: requests.Session) -> dict[str, str]:
        return {"csrfmiddlewaretoken": session.cookies.get("csrftoken") or ""}

    def post(self, who: str, path: str, data: dict[str, Any]) -> requests.Response:
        session = self.session(who)
        return session.post(
            f"{self.server.url}{path}",
            data={**data, **self.csrf(session)},
            timeout=30,
            allow_redirects=False,
        )

    def get(self, who: str, path: str) -> requests.Response:
        return self.session(who).get(f"{self.server.url}{path}", timeout=30)

    def shell(self, code: str) -> str:
        """What `code` prints last, run by `manage.py shell`."""
        return (self.server.manage("shell", "-c", code).strip().splitlines() or [""])[-1]

    def audit_count(self, **filters: str) -> int:
        return int(
            self.shell(
                "from stepchange.models import AuditRecord\n"
                f"print(AuditRecord.objects.filter(**{filters!r}).count())"
            )
        )

    def log(self) -> str:
        assert self.server.process is not None
        return self.server.process.output()

    def executor_url(self, app: str) -> str:
        return f"{self.server.ws_url}/websocket/{app}/{KEYS[app]}"

    # -- the findings -------------------------------------------------------------------

    def p1(self) -> Outcome:
        audit = self.api("lim", "GET", "/audit?limit=500").json()["items"]
        foreign = {r["application_name"] for r in audit} - {ALPHA, ""}
        export = self.api("lim", "GET", "/audit/export?format=json")
        exported = {r["application_name"] for r in json.loads(export.text or "[]")} - {ALPHA, ""}
        page = self.get("lim", "/audit/").text
        admin_apps = self.get("lim", "/admin/stepchange/application/").text
        key_form = self.get("lim", "/admin/stepchange/executorkey/add/").text
        beta_pk = self.ids["apps"][BETA]
        denied = self.audit_count(actor_name="lim", action="access.denied")
        minted = self.post(
            "lim", "/admin/stepchange/executorkey/add/", {"application": beta_pk, "name": "x"}
        )
        seen = [
            name
            for name, leak in [
                ("API audit", foreign),
                ("export", exported),
                ("console audit", BETA in page),
                ("admin list", BETA in admin_apps),
                ("key form", f'value="{beta_pk}"' in key_form),
                ("key minted", minted.status_code == 302),
            ]
            if leak
        ]
        denied = self.audit_count(actor_name="lim", action="access.denied") - denied
        evidence = (
            f"API {len(audit)} records, export {export.status_code}, "
            f"mint POST {minted.status_code} (+{denied} access.denied)"
        )
        return bool(seen), f"{evidence}; leaks: {', '.join(seen) or 'none'}"

    def p2(self) -> Outcome:
        lim = self.ids["lim"]
        form = self.get("lim", f"/admin/auth/user/{lim}/change/")
        denied = self.audit_count(actor_name="lim", action="access.denied")
        answer = self.post(
            "lim",
            f"/admin/auth/user/{lim}/change/",
            {"username": "lim", "is_superuser": "on", "is_active": "on", "is_staff": "on"},
        )
        became = self.shell(
            "from django.contrib.auth.models import User\n"
            f"print(User.objects.get(pk={lim}).is_superuser)"
        )
        offered = 'name="is_superuser"' in form.text
        denied = self.audit_count(actor_name="lim", action="access.denied") - denied
        return became == "True" or offered, (
            f"form GET {form.status_code} offers is_superuser: {offered}; "
            f"POST {answer.status_code} (+{denied} access.denied); "
            f"is_superuser afterwards: {became}"
        )

    def p3(self) -> Outcome:
        seen = []
        for who, app in [("vic", ALPHA), ("lim", BETA), ("sam", ALPHA)]:
            before = self.audit_count(actor_name=who, result="denied")
            answer = self.api(who, "POST", f"/apps/{app}/workflows/w1/cancel", raw=b"{bad")
            after = self.audit_count(actor_name=who, result="denied")
            seen.append((who, answer.status_code, after - before))
        bad = [s for s in seen if s[1] not in (401, 403, 404) or s[2] != 1]
        text = ", ".join(f"{w} {code} +{n} denied" for w, code, n in seen)
        return bool(bad), text

    def p4(self) -> Outcome:
        answer = self.post("vic", f"/apps/{ALPHA}/views/", {"name": "mine", "shared": "on"})
        shared = self.shell(
            "from stepchange.models import SavedView\n"
            "print(SavedView.objects.filter(owner__username='vic', shared=True).count())"
        )
        return shared != "0", f"POST {answer.status_code}; viewer's shared views: {shared}"

    def p5(self) -> Outcome:
        self.session("root")
        before = self.audit_count()
        answer = self.get("root", "/audit/?export=csv")
        after = self.audit_count()
        return after != before, f"GET {answer.status_code}; audit records {before} -> {after}"

    def p6(self) -> Outcome:
        key = f"leak-{uuid.uuid4().hex}"
        paths = [
            f"/websocket/{ALPHA}/{key}/",
            f"/prefix/websocket/{ALPHA}/{key}",
            f"//websocket/{ALPHA}/{key}",
            f"/WEBSOCKET/{ALPHA}/{key}",
            f"/websocket/{ALPHA}%2F{key}",
            f"/websocket/{ALPHA}/../{key}",
        ]
        answers, leaks = [], []
        for path in paths:
            before = len(self.log())
            try:
                with connect(f"{self.server.ws_url}{path}", open_timeout=10):
                    answers.append("open")
            except InvalidStatus as refused:
                answers.append(str(refused.response.status_code))
            except (ConnectionClosed, OSError) as exc:
                answers.append(type(exc).__name__)
            time.sleep(0.3)
            logged = self.log()[before:]
            if key in logged or "Traceback" in logged:
                leaks.append(path.replace(key, "<key>"))
        bad = bool(leaks) or any(a in ("500", "open") for a in answers)
        return bad, f"answers {answers}; key or traceback logged for: {leaks or 'none'}"

    def p7(self) -> Outcome:
        executor = RawExecutor(self.executor_url(GAMMA))
        time.sleep(1)
        key_pk = self.ids["keys"][GAMMA]
        answer = self.post(
            "root",
            "/admin/stepchange/executorkey/",
            {"action": "revoke", "_selected_action": key_pk, "index": "0"},
        )
        closed = executor.closed.wait(10)
        executor.close()
        return (
            not closed,
            f"admin revoke POST {answer.status_code}; socket closed within 10 s: {closed}",
        )

    def p8(self) -> Outcome:
        silent = RawExecutor(self.executor_url(BETA), answer=False)
        talker = RawExecutor(self.executor_url(BETA))
        time.sleep(1)
        times = []
        for _ in range(3):
            started = time.monotonic()
            answer = self.api("root", "GET", f"/apps/{BETA}/workflows")
            times.append((answer.status_code, round(time.monotonic() - started, 1)))
        silent.close()
        talker.close()
        slow = [t for t in times if t[0] != 200 or t[1] >= 10]
        return bool(slow), f"three reads with a silent and an answering executor: {times}"

    def p9(self) -> Outcome:
        odd = RawExecutor(self.executor_url(BETA), executor_id="a/b<script>x</script>")
        odd.closed.wait(5)
        close = odd.socket.close_code
        page = self.get("root", f"/apps/{BETA}/executors/")
        raw_html = "<script>x</script>" in page.text
        plain = RawExecutor(self.executor_url(BETA))
        time.sleep(1)
        plain.send({"type": "list_workflows", "request_id": "R" * 100_000, "output": []})
        time.sleep(1)
        plain.close()
        logged = "R" * 1000 in self.log()
        return raw_html or logged or page.status_code != 200, (
            f"id with / and HTML: closed {close}, executors page {page.status_code}, "
            f"raw <script>: {raw_html}; 100,000-character request_id logged: {logged} "
            "(absurd timestamps, answers for the wrong workflow: not probed)"
        )

    def p10(self) -> Outcome:
        return None, (
            "not probed here: bench/frame_cost.py measures it (RESULTS.md "
            '"Hardening: frame cost": peak growth 22,976 MB before, 240 MB after)'
        )

    def p11(self) -> Outcome:
        tries = {
            "console app name": self.get("root", "/apps/a%00b/").status_code,
            "API workflow id": self.api(
                "root", "GET", f"/apps/{ALPHA}/workflows/a%00b"
            ).status_code,
            "API filter": self.api(
                "root", "GET", f"/apps/{ALPHA}/workflows?name=a%00b"
            ).status_code,
            "API body": self.api(
                "root",
                "POST",
                f"/apps/{ALPHA}/workflows/w1/edited-forks",
                data={"start_step": 0, "reason": "a\u0000b"},
            ).status_code,
        }
        return 500 in tries.values(), f"statuses {tries}"

    def p12(self) -> Outcome:
        path = f"/apps/{BETA}/workflows/w1/fork"
        tries = {
            body: self.api("root", "POST", path, raw=body.encode()).status_code
            for body in ["true", "[null,null]", '"x"', '{"start_step": false}']
        }
        accepted = [b for b, code in tries.items() if code not in (400, 422)]
        return bool(accepted), f"fork bodies: {tries}"

    def p13(self) -> Outcome:
        answer = self.api("root", "POST", f"/apps/{BETA}/workflows/w1/fork", raw=b" " * 4096)
        kind = answer.headers.get("Content-Type", "")
        has_detail = "json" in kind and "detail" in answer.json()
        return not has_detail or answer.status_code not in (400, 413), (
            f"4 KiB body over a 1 KiB limit: {answer.status_code} {kind}, detail: {has_detail}"
        )

    def p14(self) -> Outcome:
        answer = self.api("root", "GET", f"/apps/{ALPHA}/workflows/no-such-{RUN}/steps")
        return answer.status_code == 200, f"steps of an unknown workflow: {answer.status_code}"

    def p15(self) -> Outcome:
        if self.executor is None:
            return None, "not probed: no real executor (dbos not importable)"
        workflow_id = f"wf-{RUN}"
        self.executor.get(f"/?name=probe&times=1&workflow_id={workflow_id}")
        answer = self.api(
            "root",
            "POST",
            f"/apps/{ALPHA}/workflows/{workflow_id}/edited-forks",
            data={"start_step": 0, "input": ["not", "an", "object"], "run": False},
        )
        doubled = "{{" in answer.text
        return doubled, f"wrong-shaped input: {answer.status_code}, doubled braces: {doubled}"

    def p16(self) -> Outcome:
        logins = []
        for _ in range(12):
            session = requests.Session()
            session.get(f"{self.server.url}/accounts/login/", timeout=10)
            answer = session.post(
                f"{self.server.url}/accounts/login/",
                data={"username": "vic", "password": "wrong", **self.csrf(session)},
                timeout=10,
            )
            logins.append(answer.status_code)
        tokens = [
            requests.get(
                f"{self.server.url}/api/v1/apps",
                headers={"Authorization": f"Bearer sc_wrong{uuid.uuid4().hex}"},
                timeout=10,
            ).status_code
            for _ in range(12)
        ]
        keys = []
        for _ in range(12):
            try:
                with connect(f"{self.server.ws_url}/websocket/{ALPHA}/wrong", open_timeout=10):
                    keys.append("open")
            except InvalidStatus as refused:
                keys.append(str(refused.response.status_code))
            except (ConnectionClosed, OSError) as exc:
                keys.append(type(exc).__name__)
        # A locked-out key is refused with the same 403 as a wrong one: the audit says which.
        lockouts = {
            action: self.audit_count(action=action)
            for action in ("auth.lockout", "api_token.lockout", "executor_key.lockout")
        }
        locked = logins[0] == 401 and logins[-1] in (403, 429) and tokens[-1] == 429
        locked = locked and all(lockouts.values())
        return not locked, (
            f"first/last of 12: sign-in {logins[0]}/{logins[-1]}, token {tokens[0]}/{tokens[-1]},"
            f" key {keys[0]}/{keys[-1]}; lockout audit records {lockouts}"
        )

    def p17(self) -> Outcome:
        docs = requests.get(f"{self.server.url}/api/v1/docs", timeout=10)
        csp = docs.headers.get("Content-Security-Policy", "")
        frame = docs.headers.get("X-Frame-Options", "")
        cdn = re.findall(r"https://[a-z.]*(?:cdn|unpkg)[a-z.]*", docs.text)
        return not csp or not frame or bool(cdn), (
            f"/api/v1/docs {docs.status_code}: CSP {'set' if csp else 'missing'}, "
            f"X-Frame-Options {frame or 'missing'}, CDN links {cdn or 'none'}"
        )

    def p18(self) -> Outcome:
        # ensure_admin does nothing once there is a user: a fresh (SQLite) database.
        with tempfile.TemporaryDirectory(prefix="probes-admin-") as tmp:
            fresh = StepChange(Path(tmp), env={"STEPCHANGE_ADMIN_PASSWORD": "a"})
            fresh.env.pop("DATABASE_URL", None)
            fresh.manage("migrate", "--noinput")
            try:
                fresh.manage("ensure_admin")
            except RuntimeError as refused:
                last = str(refused).strip().splitlines()[-1][:100]
                return False, f"ensure_admin with password 'a' on a fresh database refused: {last}"
        return True, "ensure_admin with password 'a' on a fresh database made the admin"

    def p19(self) -> Outcome:
        workflow_id = f"poison-{RUN}"
        self.shell(
            "from conductor.models import PoisonWorkflow\n"
            "from stepchange.models import Application\n"
            f"PoisonWorkflow.objects.create(application=Application.objects.get(name={BETA!r}),"
            f" workflow_id={workflow_id!r}, executors_killed=3)"
        )
        executor = RawExecutor(self.executor_url(BETA))
        time.sleep(1)
        listed = self.api("root", "GET", f"/apps/{BETA}/poison")
        cancel = self.api("root", "POST", f"/apps/{BETA}/workflows/{workflow_id}/cancel", data={})
        executor.close()
        held = self.shell(
            "from conductor.models import PoisonWorkflow\n"
            f"print(PoisonWorkflow.objects.filter(workflow_id={workflow_id!r},"
            " resolved_at__isnull=True).count())"
        )
        return listed.status_code != 200 or held != "0", (
            f"GET poison {listed.status_code}; API cancel {cancel.status_code}; holds left: {held}"
        )

    def p20(self) -> Outcome:
        source = (ROOT / "tests/fixtures/generate.py").read_text()
        per_run = "STEPCHANGE_TEST_RUN" in source
        return not per_run, f"tests/fixtures/generate.py names a per-run database: {per_run}"


WHAT = {
    1: "a limited admin reads/edits another application (audit, export, admin, a key)",
    2: "a non-superuser admin makes herself superuser in the admin",
    3: "malformed body on a mutating API from a viewer, a limited admin, no role",
    4: "a viewer saves a shared view",
    5: "GET /audit/?export=csv writes an audit record",
    6: "malformed executor paths: 500 or the key in the log",
    7: "a revoked key's executor stays connected",
    8: "no fail-over from a silent executor",
    9: "an executor id with / and HTML; a huge request_id logged",
    10: "an absurd executor frame's memory",
    11: "NUL bytes on Postgres (path, filter, body)",
    12: 'bodies true / [null,null] / "x" / start_step false accepted',
    13: "a body over the upload limit",
    14: "steps of an unknown workflow",
    15: "doubled braces in an edited fork's error",
    16: "no throttling of wrong passwords, tokens, keys",
    17: "CSP, X-Frame-Options and CDN on /api/v1/docs",
    18: "ensure_admin accepts the password 'a'",
    19: "API cancel leaves the poison hold / no poison API",
    20: "fixed Postgres names for SDK fixture databases",
}
# The throttle last: it locks this address out.
ORDER = [*range(1, 16), *range(17, 21), 16]


def start(data_dir: Path, databases: PostgresDatabases) -> tuple[StepChange, dict[str, Any]]:
    server = StepChange(
        data_dir,
        env={
            "DATABASE_URL": databases.new("probes_app"),
            "MAX_REQUEST_BODY_BYTES": "1024",
            "RELAY_TIMEOUT_SECONDS": "30",
        },
    ).start()
    system_db = databases.new("probes_sys")
    server.manage("register_app", ALPHA, "--key", KEYS[ALPHA], "--system-database-url", system_db)
    for name in (BETA, GAMMA):
        server.manage("register_app", name, "--key", KEYS[name])
    out = server.manage("shell", "-c", PERSONAS.format(password=PASSWORD, alpha=ALPHA)).strip()
    ids = json.loads(out.splitlines()[-1])
    ids["apps"] = json.loads(
        server.manage(
            "shell",
            "-c",
            "import json\nfrom stepchange.models import Application\n"
            "print(json.dumps({a.name: a.pk for a in Application.objects.all()}))",
        ).splitlines()[-1]
    )
    ids["system_db"] = system_db
    return server, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, nargs="*", help="Run only these findings.")
    args = parser.parse_args()
    databases = PostgresDatabases()
    executor: Executor | None = None
    with tempfile.TemporaryDirectory(prefix="probes-") as tmp:
        server, ids = start(Path(tmp), databases)
        try:
            executor = Executor(
                "python",
                conductor_url=server.ws_url,
                app=ALPHA,
                key=KEYS[ALPHA],
                system_database_url=ids["system_db"],
                version="v1",
                log_dir=Path(tmp),
            )
            probes = Probes(server, ids, executor)
            counts = {True: 0, False: 0, None: 0}
            for number in ORDER:
                if args.only and number not in args.only:
                    continue
                probe: Callable[[], Outcome] = getattr(probes, f"p{number}")
                try:
                    reproduces, evidence = probe()
                except Exception as exc:  # a probe that breaks says so, and counts as not probed
                    reproduces, evidence = None, f"not probed: the probe failed: {exc!r}"[:300]
                counts[reproduces] += 1
                verdict = {True: "reproduces", False: "fixed", None: "not probed"}[reproduces]
                print(f"{number:2}. {WHAT[number]}: {verdict} ({evidence})", flush=True)
        finally:
            if executor is not None:
                executor.stop()
            server.stop()
            databases.drop_all()
    probed, ran = counts[True] + counts[False], sum(counts.values())
    print(f"{counts[True]} of {ran} reproduce ({probed} probed, {counts[None]} not probed)")
    return 1 if counts[True] else 0


if __name__ == "__main__":
    sys.exit(main())
