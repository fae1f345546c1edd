"""What several benchmarks share: a tickgraph server in a process of its own, and a
PostgreSQL for the run (``DATABASE_URL``, or a throw-away pgserver)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

#: What ``tickgraph serve`` prints once it accepts connections.
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


@contextlib.asynccontextmanager
async def listening_server(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    what: str = "the server",
    stderr: Any = None,
) -> AsyncIterator[str]:
    """``python ARGS`` (a ``serve --port 0``) until it says where it listens; yields
    ``127.0.0.1:PORT`` and stops it with SIGTERM (SIGKILL after 30 s) afterwards."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"{what} exited before listening")
                if match := LISTENING.search(line):
                    break
        yield f"127.0.0.1:{match.group(1)}"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.contextmanager
def bench_database(prefix: str) -> Iterator[str]:
    """``DATABASE_URL`` when set, else a pgserver PostgreSQL in a temporary directory,
    deleted afterwards."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        yield url
        return
    with warnings.catch_warnings():
        # pgserver warns at import when XDG_RUNTIME_DIR is unset; its fallback works.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import get_server
    server = get_server(Path(tempfile.mkdtemp(prefix=prefix)), cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
