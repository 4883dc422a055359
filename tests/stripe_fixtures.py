"""The `localstripe` session fixture, loaded by the Stripe test modules with `pytest_plugins`.

It starts the localstripe server from the test environment on a free port
(`--from-scratch`: no state from earlier runs), waits until it answers and stops it at
the end of the session. Stripe tests point the real `stripe` library at it with
STRIPE_API_BASE (see tests/stripe_helpers.py `configure_stripe`).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"localstripe exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"localstripe did not open port {port} within {timeout} s")


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory):
    """The base URL of a localstripe server running for this test session."""
    executable = Path(sys.executable).with_name("localstripe")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "localstripe"]
    port = _free_port()
    log_path = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*command, "--port", str(port), "--from-scratch"], stdout=log, stderr=log)
    try:
        _wait_for_port(port, proc)
    except RuntimeError as exc:
        proc.kill()
        pytest.fail(f"{exc}\n{log_path.read_text(errors='replace')[-2000:]}")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
