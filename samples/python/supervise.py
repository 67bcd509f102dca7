"""Run the sample app the way `make run` does: after StepChange answers, and again after the
crash demo.

    python samples/python/supervise.py wait URL [URL ...] [--timeout SECONDS]
    python samples/python/supervise.py run

`wait` returns once every URL answers (any HTTP status), or fails after the timeout.
`run` starts `samples/python/app.py` with this environment and, when it exits with the crash
demo's code 3 (`/?name=poison`), starts it again with `POISON_DISARMED=1`: the new process
is a new executor, so StepChange recovers the crashed workflow once the application's
recovery grace period has passed. SIGTERM and SIGINT are passed on to the app; any other
exit of the app ends the supervisor with the app's code.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

CRASH_DEMO_EXIT = 3
APP = Path(__file__).with_name("app.py")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (a URL the operator gave)
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if not with 200
    except OSError:
        return False


def wait(urls: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    for url in urls:
        while not answers(url):
            if time.monotonic() > deadline:
                print(f"error: {url} did not answer within {timeout:g} s", file=sys.stderr)
                return 1
            time.sleep(0.2)
    return 0


def run() -> int:
    env = dict(os.environ)
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    while True:
        child = subprocess.Popen([sys.executable, str(APP)], env=env)
        code = child.wait()
        if stopping or code != CRASH_DEMO_EXIT or env.get("POISON_DISARMED") == "1":
            return code
        print(
            "sample app: the crash demo stopped it (exit 3); starting it again disarmed. "
            "StepChange recovers the crashed workflow once the recovery grace period has "
            "passed: watch it on the console.",
            file=sys.stderr,
            flush=True,
        )
        env["POISON_DISARMED"] = "1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    waiting = commands.add_parser("wait", help="wait until every URL answers")
    waiting.add_argument("urls", nargs="+")
    waiting.add_argument("--timeout", type=float, default=60)
    commands.add_parser("run", help="run the sample app, again disarmed after the crash demo")
    args = parser.parse_args(argv)
    if args.command == "wait":
        return wait(args.urls, args.timeout)
    return run()


if __name__ == "__main__":
    sys.exit(main())
