"""The embedded PostgreSQL never outlives the server processes that use it: not after a
``kill -9`` (a watchdog stops it), and not after a restart that found one a crashed
process left behind (it is adopted, and stopped when the new server exits)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import psutil

from tests.support.cli import clean_env
from tests.support.server_process import tickgraph
from tests.support.timing import timeout


def postmaster(data: Path) -> int:
    return int((data / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def gone(pid: int, what: str) -> None:
    try:
        async with asyncio.timeout(timeout(1)):
            while alive(pid):  # noqa: ASYNC110 - a process, not an event of ours
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"{what} (pid {pid}) is still running") from None


def watchdogs(server_pid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "server.storage.pg_housekeeping" in cmdline and str(server_pid) in cmdline:
            out.append(proc)
    return out


async def test_kill_9_leaves_no_database_running(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env(TICKGRAPH_DATA_DIR=str(data), TICKGRAPH_SIM_SEED="7")
    async with tickgraph(env, tmp_path / "server.log") as srv:
        pg = postmaster(data)
        assert alive(pg) and watchdogs(srv.proc.pid)
        srv.proc.send_signal(signal.SIGKILL)
        await srv.proc.wait()
    await gone(pg, "the embedded PostgreSQL of a killed server")


async def test_a_restart_adopts_a_database_left_running_and_stops_it_on_exit(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = clean_env(TICKGRAPH_DATA_DIR=str(data), TICKGRAPH_SIM_SEED="7")
    log = tmp_path / "server.log"
    async with tickgraph(env, log) as first:
        pg = postmaster(data)
        # A crash that takes the watchdog with it: the database is left running, with a
        # dead process holding its handle (what every kill -9 left before).
        for dog in watchdogs(first.proc.pid):
            dog.kill()
        first.proc.send_signal(signal.SIGKILL)
        await first.proc.wait()
    await asyncio.sleep(1.0)
    assert alive(pg), "the setup needs a database left behind"
    async with tickgraph(env, log) as second:
        assert postmaster(data) == pg  # adopted, not a second server
        health = await second.http.get("/healthz")
        assert health.status_code == 200
        second.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout(3)):
            assert await second.proc.wait() == 0
    await gone(pg, "the adopted embedded PostgreSQL after a clean exit")
