"""Boot StepChange under Daphne on a free port and fetch real pages over the network."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


@pytest.fixture
def stepchange(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "STEPCHANGE_DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "stepchange.settings",
    }
    manage(env, "migrate", "--noinput")
    log = tmp_path / "daphne.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "stepchange.server", "-b", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/accounts/login/", process=server)
        yield base, env, log
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_daphne_serves_the_login_page_static_files_and_the_api(
    stepchange: tuple[str, dict[str, str], Path],
) -> None:
    base, env, log = stepchange
    with urllib.request.urlopen(f"{base}/accounts/login/") as page:
        assert page.status == 200
        assert b"Sign in to StepChange" in page.read()
    with urllib.request.urlopen(f"{base}/static/stepchange/console.css") as css:
        assert b".topbar" in css.read()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/api/v1/apps")
    assert refused.value.code == 401
    refused.value.close()

    manage(env, "register_app", "orders")
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User, Group; "
        "User.objects.create_user('otto').groups.add(Group.objects.get(name='viewer'))",
    )
    token = manage(env, "create_api_token", "otto").strip()
    request = urllib.request.Request(
        f"{base}/api/v1/apps", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request) as apps:
        assert b'"name":"orders"' in apps.read().replace(b" ", b"")
    time.sleep(0.2)
    assert "GET /api/v1/apps" in log.read_text()
