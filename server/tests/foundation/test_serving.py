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
    """The supervisor's API processes (not multiprocessing's resource tracker nor the embedded
    background worker), zombies excluded."""
    found = subprocess.run(
        ["ps", "-ww", "--ppid", str(pid), "-o", "pid=,stat=,args="],
        capture_output=True,
        text=True,
        check=False,
    )
    workers = []
    for line in found.stdout.splitlines():
        pid_text, state, args = line.split(maxsplit=2)
        if "resource_tracker" not in args and "celery" not in args and not state.startswith("Z"):
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


def _refuses_connections(port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=0.5)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            pass  # accepted but slow to answer: not refused yet
        time.sleep(0.1)
    return False


def _hang_a_request(port: int) -> socket.socket:
    """A request whose body never finishes arriving: in flight until the server gives up on it."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection.sendall(
        b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    return connection


def test_sigterm_stops_accepting_and_exits_after_the_grace_period(tmp_path: Path) -> None:
    port = _free_port()
    grace = 1.0
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "STORAGE_DIR": str(tmp_path / "storage"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
        "SHUTDOWN_GRACE_SECONDS": str(grace),
    }
    subprocess.run([METRICIS, "db", "upgrade"], cwd=SERVER_ROOT, env=env, check=True)
    for workers in ("1", "2"):
        server = subprocess.Popen(
            [METRICIS, "serve", "--workers", workers], cwd=SERVER_ROOT, env=env
        )
        hung: list[socket.socket] = []
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/api/health")
            hung.extend(_hang_a_request(port) for _ in range(3))
            time.sleep(0.3)
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            # New connections are refused once the stop has begun, while the hung requests are
            # still in their grace period (a loaded machine may take a moment to get there).
            assert _refuses_connections(port, within=grace + 5)
            server.wait(timeout=grace + 15)
            elapsed = time.monotonic() - signalled
            # Without the grace period a single worker waited for ever and the supervisor killed
            # its workers after 15 s; the margin absorbs a loaded machine.
            assert elapsed < grace + 10, f"{workers} worker(s) took {elapsed:.1f} s to stop"
        finally:
            for connection in hung:
                connection.close()
            if server.poll() is None:
                server.kill()
                server.wait()
