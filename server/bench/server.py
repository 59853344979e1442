"""Start a real `metricis serve` for a benchmark and stop it afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SERVER_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


METRICIS = str(Path(sys.executable).with_name("metricis"))


@contextmanager
def running_server(
    env: dict[str, str],
    *,
    workers: int = 1,
    admin: tuple[str, str] | None = None,
    cpu: int | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Migrate, optionally create an administrator (email, password), serve on `port` (default:
    a free one), yield the URL. `cpu` pins the server's processes to that core (Linux), away
    from the load generator."""
    with running_server_process(env, workers=workers, admin=admin, cpu=cpu, port=port) as (
        base_url,
        _pid,
    ):
        yield base_url


@contextmanager
def running_server_process(
    env: dict[str, str],
    *,
    workers: int = 1,
    admin: tuple[str, str] | None = None,
    cpu: int | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, int]]:
    """As `running_server`, yielding the URL and the server's process id (for CPU figures)."""
    port = port or free_port()
    full_env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warning"}
    subprocess.run([METRICIS, "db", "upgrade"], cwd=SERVER_ROOT, env=full_env, check=True)
    if admin is not None:
        email, password = admin
        subprocess.run(
            [METRICIS, "create-admin", "--email", email, "--name", "Bench", "--password", password],
            cwd=SERVER_ROOT,
            env=full_env,
            check=True,
        )
    pinned = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    process = subprocess.Popen(
        [*pinned, METRICIS, "serve", "--workers", str(workers)], cwd=SERVER_ROOT, env=full_env
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server did not start within 60 s")
        yield base_url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
