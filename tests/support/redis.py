"""Redis for tests: one real ``redis-server`` per session, on a free loopback port.

- ``redis_url`` (session): ``TEST_REDIS_URL`` when set, otherwise a ``redis-server``
  started once in a temporary directory (no persistence) and stopped at the end.
- ``redis_client`` (function): a ``redis.asyncio.Redis`` on that server, closed after
  the test. Tests share the server: give keys a unique prefix, never FLUSHALL.
- ``RedisServer``: start and stop a server of your own (tests of outages and restarts).

A missing ``redis-server`` or one that does not start FAILS the test with the reason,
never skips it: a missing server must not turn into a green run (CI included).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from redis.asyncio import Redis

from tests.support.timing import TIMEOUT

INSTALL_HINT = (
    "redis-server is not installed; install it (Debian/Ubuntu: apt-get install redis-server) "
    "or set TEST_REDIS_URL to a server the tests may use"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A throw-away ``redis-server``: loopback only, no RDB or AOF, own temp dir."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="tickgraph-test-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self._dir / "redis.log"

    def start(self) -> RedisServer:
        """Start and wait until it answers PING; raise ``RuntimeError`` with its log if not."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        options = {
            "--port": str(self.port),
            "--bind": "127.0.0.1",
            "--save": "",  # no RDB snapshots
            "--appendonly": "no",
            "--dir": str(self._dir),
            "--logfile": str(self.log_file),
            "--daemonize": "no",
        }
        argv = [binary, *(part for option in options.items() for part in option)]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with status {self._proc.returncode}: {self._log()}"
                    )
                try:
                    if client.ping():
                        return self
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not answer PING within "
                        f"{TIMEOUT:g} s: {self._log()}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (it keeps its port and directory, so ``start`` works again)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=TIMEOUT)
        self._proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-2000:] or "(empty log)"
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running_redis(port: int | None = None) -> Iterator[RedisServer]:
    """A started ``RedisServer``, removed afterwards; the test fails if it cannot start.

    Without ``port``, a few free ports are tried: another process may take the one
    ``free_port`` found before redis-server binds it.
    """
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        server = RedisServer(port)
        try:
            server.start()
            break
        except RuntimeError as exc:
            server.remove()
            if attempt == attempts - 1:
                pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("TEST_REDIS_URL", "").strip()
    if external:
        yield external
        return
    with running_redis() as server:
        yield server.url


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        await client.ping()
    except redis.exceptions.RedisError as exc:
        await client.aclose()
        pytest.fail(f"test Redis is not reachable: {type(exc).__name__}: {exc}", pytrace=False)
    try:
        yield client
    finally:
        await client.aclose()
