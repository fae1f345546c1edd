"""The embedded PostgreSQL never outlives the servers that use it, however they stopped.

pgserver keeps the pids of the processes using a data directory in
``<pgdata>/.handle_pids.json`` (under its inter-process lock); a process giving up its
handle stops the server when it is the last one listed. A process killed with SIGKILL
never gives its handle back, so its pid stays listed and the server would run forever
(the next server using the directory would not be the last one out either).

Two things close that:

* **Adopt at start-up** (``forget_dead_handles``, before taking a handle): pids of
  processes that no longer exist are dropped from the list. A server left running by
  a crashed process is then adopted, and stopped when the new process is the last out.
* **A watchdog** (``python -m server.storage.pg_housekeeping PID PGDATA``, started
  detached by ``start_watchdog``): it waits for the server process to exit, however it
  exits, then drops the dead pids and, when nobody is left, stops PostgreSQL
  (``pg_ctl stop``, fast mode). So even after a ``kill -9`` nothing is left running for
  more than about a second.

A pid reused by an unrelated process would look alive: the server is then left to the
next start-up's cleanup, the safe direction.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import psutil

HANDLES = ".handle_pids.json"
#: How often the watchdog looks at the server process.
POLL_S = 0.5


def _pgserver() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import PostgresServer

    return PostgresServer


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Drop the pids of processes that are gone from pgserver's handle list (under its
    lock); returns the pids still listed. Blocking."""
    with _pgserver()._lock:
        return forget_dead_handles_locked(pgdata)


def stop_if_unused(pgdata: Path) -> bool:
    """Stop PostgreSQL in ``pgdata`` when no live process holds a handle on it; whether
    it was stopped. Blocking."""
    server_class = _pgserver()
    with server_class._lock:
        if forget_dead_handles_locked(pgdata):
            return False
        postmaster = pgdata / "postmaster.pid"
        if not postmaster.exists():
            return False
        pid = int(postmaster.read_text().splitlines()[0])
        if not _alive(pid):
            return False
        return _pg_ctl_stop(pgdata, pid)


def forget_dead_handles_locked(pgdata: Path) -> list[int]:
    """``forget_dead_handles`` for a caller already holding pgserver's lock."""
    path = pgdata / HANDLES
    if not path.exists():
        return []
    listed = json.loads(path.read_text() or "[]")
    alive = [pid for pid in listed if _alive(int(pid))]
    if alive != listed:
        path.write_text(json.dumps(alive))
    return alive


def _pg_ctl_stop(pgdata: Path, pid: int) -> bool:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver import _commands

    pg_ctl: Any = getattr(_commands, "pg_ctl")  # noqa: B009 - made at import time: mypy cannot see it
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
        return True
    except Exception:
        # pg_ctl could not do it (a broken data dir): the postmaster by signal.
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            proc.wait(10)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
        return not _alive(pid)


def start_watchdog(pid: int, pgdata: Path) -> None:
    """Watch process ``pid`` from a detached process; stop the database when it is gone
    and nobody else uses it."""
    subprocess.Popen(
        [sys.executable, "-m", "server.storage.pg_housekeeping", str(pid), str(pgdata)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the server's process group spares it
        close_fds=True,
    )


def _watch(pid: int, pgdata: Path) -> int:
    while _alive(pid):
        time.sleep(POLL_S)
    stop_if_unused(pgdata)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="stop the embedded PostgreSQL after PID")
    parser.add_argument("pid", type=int)
    parser.add_argument("pgdata", type=Path)
    args = parser.parse_args(argv)
    return _watch(args.pid, args.pgdata)


if __name__ == "__main__":
    sys.exit(main())
