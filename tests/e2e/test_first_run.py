"""`make run` as a newcomer meets it: StepChange first, then the sample app, one closing
block with the URL and the admin's password, and the crash demo recovered in place."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.servers import ROOT, eventually, free_port

pytestmark = pytest.mark.e2e

BLOCK_END = "stop: Ctrl-C"


class MakeRun:
    def __init__(self, data_dir: Path) -> None:
        self.port, self.sample_port = free_port(), free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
            "STEPCHANGE_DATA_DIR": str(data_dir),
            "RECOVERY_SWEEP_SECONDS": "1",
        }
        self.env.pop("STEPCHANGE_ADMIN_PASSWORD", None)
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "run",
                f"PORT={self.port}",
                f"SAMPLE_PORT={self.sample_port}",
                "SAMPLE_RECOVERY_GRACE=2",
                f"PYTHON={sys.executable}",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the whole process group."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
        code = self.popen.wait(timeout=60)
        self.reader.join(timeout=10)
        assert self.popen.stdout is not None
        self.popen.stdout.close()
        return code


def page(url: str) -> str | None:
    """The page's text, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def test_make_run_starts_stepchange_then_the_sample_and_recovers_its_crash_demo(
    tmp_path: Path,
) -> None:
    if not (ROOT / ".venv/bin/python").exists():
        pytest.fail("no .venv: `make run` is tested from the checkout `make test` installed")
    # The key `make run` generates once is token_urlsafe, whose alphabet has "-": one key in
    # 64 begins with it, and the run must still take it as the value of --key.
    (tmp_path / "sample_key").write_text("-" + "k" * 31 + "\n")
    run = MakeRun(tmp_path)
    try:
        eventually(
            lambda: BLOCK_END in run.output() or run.popen.poll() is not None,
            timeout=180,
            what="make run's closing block",
        )
        out = run.output()
        assert run.popen.poll() is None, out
        # Installs for running only: no browser, no Node packages, no sudo.
        for absent in ("apt-get", "chromium", "npm ", "sudo"):
            assert absent not in out
        # The sample found StepChange answering on its first try, before the block.
        block_at = out.index("StepChange is running")
        assert "Connected to DBOS conductor" in out[:block_at]
        for retry in ("Failed to connect", "Unexpected exception in connection to conductor"):
            assert retry not in out[:block_at]
        block = out[block_at:].splitlines()
        assert block[0] == f"StepChange is running: http://127.0.0.1:{run.port}/"
        password = re.search(r"sign in as admin, password (\S+) ", block[1])
        assert password, block
        assert block[-1].strip() == BLOCK_END
        # The password is the admin's: Django's own check against the user just made.
        checked = run.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User\n"
            f"print(User.objects.get(username='admin').check_password({password.group(1)!r}))",
        )
        assert checked.strip().splitlines()[-1] == "True"

        # The crash demo: the sample dies with code 3, comes back disarmed, and StepChange
        # recovers the crashed workflow onto the new executor.
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(
                f"http://127.0.0.1:{run.sample_port}/?name=poison&workflow_id=wf-first-run",
                timeout=30,
            )
        eventually(lambda: "starting it again disarmed" in run.output(), timeout=30, what="restart")
        eventually(
            lambda: "Recovered executor" in run.output(), timeout=60, what="StepChange's recovery"
        )
        status_url = f"http://127.0.0.1:{run.sample_port}/workflow?workflow_id=wf-first-run"
        eventually(
            lambda: "SUCCESS" in (page(status_url) or ""),
            timeout=60,
            what="the recovered workflow to finish",
        )
    finally:
        code = run.interrupt()
    # Ctrl-C stops everything make run started.
    assert code != 0
    time.sleep(1)
    assert page(f"http://127.0.0.1:{run.port}/accounts/login/") is None
    assert page(f"http://127.0.0.1:{run.sample_port}/health") is None
