"""The ``tickgraph`` command as a separate process, for tests that must kill it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support.timing import TIMEOUT


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TICKGRAPH_", "POLYGON_", "DATABASE_URL", "REDIS_URL"))
    }
    return env | extra


@asynccontextmanager
async def process(
    *args: str, env: dict[str, str], ready: re.Pattern[str]
) -> AsyncIterator[tuple[asyncio.subprocess.Process, re.Match[str]]]:
    """Start ``python -m server.cli ARGS`` and wait for a stdout line matching ``ready``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT * 6):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    err = (await proc.stderr.read()).decode() if proc.stderr else ""
                    raise AssertionError(f"{args[0]} exited before ready: {err[-2000:]}")
                if match := ready.search(line):
                    break
        yield proc, match
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError(f"{args[0]} ignored SIGTERM") from None


LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
REPLAY_READY = re.compile(r"POLYGON_WS_URL=(ws://127\.0\.0\.1:\d+/stocks)")


async def run_cli(
    *args: str, env: dict[str, str], timeout: float = TIMEOUT * 3
) -> tuple[int, str, str]:
    """Run ``python -m server.cli ARGS`` to completion: (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{args[0]} did not finish in {timeout:g} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
