"""Several API processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's `--workers` shares one socket between its processes, and long-lived keep-alive
connections then pile up on whichever process accepts first (measured: one worker at 80 % CPU,
the other at 20 %). With a socket per process the kernel spreads new connections across them.
The supervisor restarts a process that dies and stops them all on SIGTERM or SIGINT, together
with the embedded background worker when there is one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn

from app.core.logging import get_logger

logger = get_logger(__name__)

RESTART_DELAY_SECONDS = 0.5


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _run_worker(host: str, port: int, options: dict[str, Any]) -> None:
    sock = _listening_socket(host, port)
    config = uvicorn.Config("app.main:create_app", factory=True, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


class Companion:
    """A child command run beside the API processes (the embedded background worker): started
    with them, restarted when it dies, stopped with them.

    It runs in a process group of its own, and the whole group is killed when it dies or is
    stopped: a Celery worker killed outright leaves its children (the embedded beat, pool
    processes) running, and an orphaned beat would keep sending periodic tasks beside the
    restarted one.
    """

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # A session of its own: a terminal's Ctrl-C reaches the supervisor, which stops it.
        self.process = subprocess.Popen(self.command, start_new_session=True)  # noqa: S603

    def restart_if_dead(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            logger.warning("companion_died", pid=self.process.pid, exitcode=self.process.returncode)
            self._kill_group()
            self.start()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def join(self, timeout: float) -> None:
        """Wait for a warm stop (running tasks finish), then kill whatever is left of it."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("companion_killed_after_grace", pid=self.process.pid)
        self._kill_group()
        self.process.wait()

    def _kill_group(self) -> None:
        assert self.process is not None
        # The group id is the leader's pid, taken by no other group while any member lives.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def serve_with_reuse_port(
    host: str,
    port: int,
    workers: int,
    options: dict[str, Any],
    *,
    stop_timeout: float,
    companion: Companion | None = None,
) -> None:
    """Run `workers` processes (and the companion) until SIGTERM/SIGINT, then stop them: each
    stops accepting at once and finishes its requests within its graceful-shutdown timeout; one
    still alive after `stop_timeout` is killed."""
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_run_worker, args=(host, port, options), daemon=False)
        process.start()
        return process

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [start() for _ in range(workers)]
    if companion is not None:
        companion.start()
    logger.info("supervisor_started", workers=workers, host=host, port=port)
    while not stopping:
        time.sleep(RESTART_DELAY_SECONDS)
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                logger.warning("worker_died", pid=process.pid, exitcode=process.exitcode)
                processes[index] = start()
        if companion is not None and not stopping:
            companion.restart_if_dead()
    for process in processes:
        process.terminate()
    if companion is not None:
        companion.terminate()
    deadline = time.monotonic() + stop_timeout
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            logger.warning("worker_killed_after_grace", pid=process.pid)
            process.kill()
            process.join()
    if companion is not None:
        companion.join(timeout=max(0.0, deadline - time.monotonic()))
