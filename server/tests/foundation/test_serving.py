"""`metricis serve --workers 2`: one socket per process, restart of a dead worker, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

METRICIS = str(Path(sys.executable).with_name("metricis"))
SERVER_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    """The supervisor's API processes (not multiprocessing's resource tracker), zombies excluded."""
    found = subprocess.run(
        ["ps", "-ww", "--ppid", str(pid), "-o", "pid=,stat=,args="],
        capture_output=True,
        text=True,
        check=False,
    )
    workers = []
    for line in found.stdout.splitlines():
        pid_text, state, args = line.split(maxsplit=2)
        if "resource_tracker" not in args and not state.startswith("Z"):
            workers.append(int(pid_text))
    return workers


def _wait_healthy(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def test_workers_restart_and_stop(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "STORAGE_DIR": str(tmp_path / "storage"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    subprocess.run([METRICIS, "db", "upgrade"], cwd=SERVER_ROOT, env=env, check=True)
    supervisor = subprocess.Popen([METRICIS, "serve", "--workers", "2"], cwd=SERVER_ROOT, env=env)
    url = f"http://127.0.0.1:{port}/api/health"
    try:
        _wait_healthy(url)
        workers = _children(supervisor.pid)
        assert len(workers) == 2
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = _children(supervisor.pid)
            if victim not in current and len(current) == len(workers):
                break
            time.sleep(0.2)
        assert victim not in _children(supervisor.pid)
        assert len(_children(supervisor.pid)) == len(workers)
        _wait_healthy(url)
        statuses = {httpx.get(url, timeout=5).status_code for _ in range(20)}
        assert statuses == {200}
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
    assert supervisor.returncode == 0
    assert _children(supervisor.pid) == []
