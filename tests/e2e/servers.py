"""Real processes for end-to-end tests: StepChange under Daphne, and real DBOS executors
(the Python and TypeScript sample applications) connected to it."""

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (Linux): its socket descriptors' inodes,
    looked up among the listening sockets of /proc/<pid>/net/tcp and tcp6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            listening = fields[3] == "0A"
            if listening and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_for_http(url: str, *, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def eventually(check: Callable[[], Any], *, timeout: float = 30, what: str = "") -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(0.2)


def require_postgres() -> None:
    try:
        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Postgres is unreachable and CI=true: {exc}")
        pytest.skip(f"Postgres is unreachable: {exc}")


class PostgresDatabases:
    """Throwaway databases, dropped at the end (after their users are disconnected)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self, prefix: str) -> str:
        require_postgres()
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return f"{POSTGRES}/{name}"

    def drop_all(self) -> None:
        if not self.names:
            # Nothing made (Postgres may not even be there): nothing to drop.
            return
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            for name in self.names:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    [name],
                )
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


class SystemDatabase:
    """Direct reads of an executor's DBOS system database (a SQLite file, or Postgres with
    the tables in schema `dbos`), to check what an action really did. Each read opens and
    closes its own connection, so the test never holds a lock the executor waits on."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """`sql` with `%s` placeholders and unqualified table names."""
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
                conn.row_factory = sqlite3.Row
                return [dict(row) for row in conn.execute(sql.replace("%s", "?"), params)]
        with psycopg.connect(self.url, options="-c search_path=dbos", row_factory=dict_row) as conn:
            return list(conn.execute(sql.encode(), params))

    def workflow(self, workflow_id: str) -> dict[str, Any] | None:
        """The workflow_status row, or None."""
        found = self.rows("SELECT * FROM workflow_status WHERE workflow_uuid = %s", workflow_id)
        return found[0] if found else None

    def status(self, workflow_id: str) -> str | None:
        row = self.workflow(workflow_id)
        return None if row is None else str(row["status"])

    def row(self, workflow_id: str) -> dict[str, Any]:
        """The workflow_status row, which must be there."""
        row = self.workflow(workflow_id)
        assert row is not None, f"no workflow_status row for {workflow_id}"
        return row

    def wait_status(self, workflow_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        """The workflow_status row once its status is one of `statuses`."""

        def check() -> dict[str, Any] | None:
            row = self.workflow(workflow_id)
            return row if row is not None and row["status"] in statuses else None

        return eventually(check, timeout=timeout, what=f"{workflow_id} to be {statuses}")

    def steps(self, workflow_id: str) -> list[dict[str, Any]]:
        """The operation_outputs rows (step checkpoints), in order."""
        return self.rows(
            "SELECT * FROM operation_outputs WHERE workflow_uuid = %s ORDER BY function_id",
            workflow_id,
        )

    def count(self, table: str, workflow_id: str) -> int:
        """How many rows of `table` belong to the workflow."""
        [row] = self.rows(
            f"SELECT count(*) AS n FROM {table} WHERE workflow_uuid = %s", workflow_id
        )
        return int(row["n"])


class Process:
    """A child process whose output goes to a log file the test can show on failure."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


class StepChange:
    """StepChange under Daphne on a free port, with its own data directory; from this
    checkout, or from `root` (another checkout: the bench compares two versions)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        name: str = "",
        root: Path = ROOT,
    ) -> None:
        self.root = root
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
            "STEPCHANGE_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "stepchange.settings",
            "RECOVERY_SWEEP_SECONDS": "1",
            **(env or {}),
        }
        self.name = name or f"stepchange-{self.port}"
        self.process: Process | None = None
        self._token = ""
        self._viewer: urllib.request.OpenerDirector | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def start(self, *, migrate: bool = True) -> "StepChange":
        if migrate:
            self.manage("migrate", "--noinput")
        argv = [sys.executable, "-m", "stepchange.server", "-b", "127.0.0.1", "-p", str(self.port)]
        self.process = Process(self.name, argv, self.env, self.data_dir, cwd=self.root)
        wait_for_http(f"{self.url}/accounts/login/", process=self.process.popen)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def user(self, username: str, role: str, password: str | None = None) -> None:
        """A user of `role` (a group: viewer, operator, admin), made unless there is one."""
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User, Group\n"
            f"name, role, password = {username!r}, {role!r}, {password!r}\n"
            "if not User.objects.filter(username=name).exists():\n"
            "    u = User.objects.create_user(name, password=password)\n"
            "    u.groups.add(Group.objects.get(name=role))",
        )

    def sign_in(self, username: str, password: str) -> urllib.request.OpenerDirector | None:
        """A browser-like opener signed in as `username` through the login form, or None
        when the password is refused (401, the form again)."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{self.url}/accounts/login/", timeout=30).read().decode()
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert match, "no CSRF token on the login page"
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)}
        ).encode()
        request = urllib.request.Request(
            f"{self.url}/accounts/login/", data=form, headers={"Referer": self.url}
        )
        try:
            opener.open(request, timeout=30).read()
        except urllib.error.HTTPError as refused:
            with refused:
                if refused.code == 401:
                    return None
                raise
        return opener

    def page(self, path: str) -> str:
        """A console page's HTML, as a signed-in viewer sees it."""
        if self._viewer is None:
            password = uuid.uuid4().hex
            self.user("e2e-viewer", "viewer", password)
            self._viewer = self.sign_in("e2e-viewer", password)
            assert self._viewer is not None
        with self._viewer.open(f"{self.url}{path}", timeout=60) as response:
            return str(response.read().decode())

    def token(self) -> str:
        """An admin's API token (made once)."""
        if not self._token:
            self.user("e2e-admin", "admin")
            self._token = self.manage("create_api_token", "e2e-admin").strip()
        return self._token

    def api(
        self, method: str, path: str, body: Any = None, *, timeout: float = 60
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.url}/api/v1{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"null")

    def executors(self, app: str) -> list[dict[str, Any]]:
        status, body = self.api("GET", f"/apps/{app}/executors")
        assert status == 200, body
        return list(body)

    def wait_executors(self, app: str, count: int, *, timeout: float = 30) -> list[dict[str, Any]]:
        return eventually(
            lambda: (found := self.executors(app)) and len(found) == count and found,
            timeout=timeout,
            what=f"{count} executor(s) of {app}",
        )


class Proxy(Process):
    """nginx from deploy/nginx.conf, unprivileged on a free port, in front of `servers`."""

    def __init__(self, servers: list["StepChange"], log_dir: Path) -> None:
        self.port = free_port()
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        prefix = log_dir / f"nginx-{self.port}"
        prefix.mkdir()
        site = (ROOT / "deploy/nginx.conf").read_text()
        upstreams = "".join(f"    server 127.0.0.1:{server.port};\n" for server in servers)
        site = re.sub(
            r"upstream stepchange \{[^}]*\}", f"upstream stepchange {{\n{upstreams}}}", site
        )
        site = site.replace("listen 8001;", f"listen 127.0.0.1:{self.port};")
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
            f"http {{\n  client_body_temp_path {prefix}/body;\n"
            f"  proxy_temp_path {prefix}/proxy;\n{site}\n}}\n"
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            if os.environ.get("CI") == "true":
                pytest.fail("nginx is missing and CI=true: run `make install`")
            pytest.skip("nginx is missing: run `make install`")
        argv = [nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
        super().__init__(f"nginx-{self.port}", argv, dict(os.environ), log_dir)
        wait_for_http(f"http://127.0.0.1:{self.port}/healthz", process=self.popen)


class Executor(Process):
    """A real DBOS executor: one of the sample applications, with its small HTTP page."""

    def __init__(
        self,
        language: str,
        *,
        conductor_url: str,
        app: str,
        key: str,
        system_database_url: str,
        version: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        # `python`: the interpreter for the Python sample, e.g. one with an older dbos.
        self.http_port = free_port()
        env = {
            **os.environ,
            "DBOS_APP_NAME": app,
            "DBOS_CONDUCTOR_URL": conductor_url,
            "DBOS_CONDUCTOR_KEY": key,
            "DBOS_SYSTEM_DATABASE_URL": system_database_url,
            "DBOS_APPLICATION_VERSION": version,
            "SAMPLE_HTTP_PORT": str(self.http_port),
            "STEPCHANGE_DATA_DIR": str(log_dir),
            **(extra_env or {}),
        }
        if language == "python":
            argv = [python, "samples/python/app.py"]
        else:
            if not (ROOT / "samples/typescript/node_modules/@dbos-inc/dbos-sdk").exists():
                pytest.fail("samples/typescript has no node_modules: run `make install`")
            argv = ["node", "samples/typescript/app.js"]
        super().__init__(f"{language}-{app}-{self.http_port}", argv, env, log_dir)
        wait_for_http(f"http://127.0.0.1:{self.http_port}/health", process=self.popen, timeout=60)

    def get(self, path: str, *, timeout: float = 60) -> str:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(timeout=10)
