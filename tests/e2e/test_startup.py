"""``tickgraph serve`` start-up failures, as a user meets them: one line naming the
problem and the flag or variable they used, a documented exit status, no traceback,
and nothing left running (no embedded PostgreSQL, no half-open port)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.cli import LISTENING, clean_env, process
from tests.support.postgres import with_database
from tests.support.timing import TIMEOUT

EXIT_CONFIG, EXIT_LISTEN, EXIT_STARTUP = 2, 3, 4


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory the embedded PostgreSQL's own user can reach. Not under pytest's
    base temp: another pytest session on the machine resets its parent to mode 0700,
    and initdb (run as that user) then cannot get in."""
    path = Path(tempfile.mkdtemp(prefix="tickgraph-test-data-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def start_serve(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def serve(*args: str, env: dict[str, str]) -> tuple[int, list[str], str]:
    """Run ``tickgraph serve ARGS`` to its end: exit status, stderr lines, stdout."""
    proc = await start_serve(*args, env=env)
    async with asyncio.timeout(TIMEOUT * 3):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode().strip().splitlines(), out.decode()


def only_failure(lines: list[str]) -> str:
    """The one line that says what failed; nothing that looks like a crash."""
    text = "\n".join(lines)
    assert "Traceback" not in text and "Task exception" not in text, text
    failures = [line for line in lines if line.startswith("tickgraph: ")]
    assert len(failures) == 1, lines
    return failures[0]


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def embedded_postgres_running(data_dir: Path) -> bool:
    return (data_dir / "postgres" / "postmaster.pid").exists()


async def test_a_bad_flag_is_reported_as_the_flag_and_a_bad_variable_as_the_variable() -> None:
    code, lines, _ = await serve("--port", "abc", env=clean_env(TICKGRAPH_SYMBOLS="AAPL,no way"))
    assert code == EXIT_CONFIG
    assert lines[0] == (
        "tickgraph: configuration error: --port='abc': must be a whole number between 0 and 65535"
    ), lines
    assert lines[1].startswith("tickgraph: configuration error: TICKGRAPH_SYMBOLS="), lines
    assert len(lines) == 2

    code, lines, _ = await serve(env=clean_env(TICKGRAPH_PORT="abc"))
    assert code == EXIT_CONFIG
    assert lines == [
        "tickgraph: configuration error: TICKGRAPH_PORT='abc': "
        "must be a whole number between 0 and 65535"
    ]


async def test_a_port_in_use_fails_at_once_before_anything_starts(tmp_path: Path) -> None:
    with listening_socket() as taken:
        port = str(taken.getsockname()[1])
        code, lines, out = await serve(
            "--port", port, env=clean_env(TICKGRAPH_DATA_DIR=str(tmp_path))
        )
        assert code == EXIT_LISTEN
        line = only_failure(lines)
        assert line.startswith(f"tickgraph: cannot listen on 127.0.0.1:{port}: "), line
        assert "already in use" in line and line.endswith("choose another port with --port")
        assert "listening" not in out
        # Nothing was started: not even the embedded database's directory exists.
        assert not (tmp_path / "postgres").exists()

        code, lines, _ = await serve(
            env=clean_env(TICKGRAPH_PORT=port, TICKGRAPH_DATA_DIR=str(tmp_path))
        )
        assert code == EXIT_LISTEN
        assert only_failure(lines).endswith("choose another port with TICKGRAPH_PORT")


async def test_an_address_that_is_not_this_machines_names_the_host_flag(tmp_path: Path) -> None:
    # 203.0.113.0/24 is TEST-NET-3: never an address of this machine. Binding fails
    # locally; nothing is sent anywhere.
    code, lines, _ = await serve(
        "--host", "203.0.113.7", env=clean_env(TICKGRAPH_DATA_DIR=str(tmp_path))
    )
    assert code == EXIT_LISTEN
    line = only_failure(lines)
    assert "203.0.113.7 is not an address of this machine" in line and "fix --host" in line


async def test_an_unreachable_database_is_one_line_naming_database_url(
    tmp_path: Path, postgres_url: str
) -> None:
    # An existing server, a database that does not exist: refused at once (no retries),
    # with the password kept out of the message.
    parts = urlsplit(with_database(postgres_url, "no_such_database"))
    host = parts.netloc.rpartition("@")[2]
    url = urlunsplit(parts._replace(netloc=f"postgres:s3cret-pw@{host}"))
    port = free_port()
    code, lines, out = await serve(
        "--port",
        str(port),
        env=clean_env(DATABASE_URL=url, TICKGRAPH_DATA_DIR=str(tmp_path)),
    )
    assert code == EXIT_STARTUP
    line = only_failure(lines)
    assert line.startswith("tickgraph: start-up failed: DATABASE_URL: cannot connect"), line
    assert "no_such_database" in line and "s3cret-pw" not in "\n".join(lines) + out
    # The port was given back: it can be listened on again at once.
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


async def test_a_data_dir_that_is_a_file_names_the_flag(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    code, lines, _ = await serve("--port", "0", "--data-dir", str(not_a_dir), env=clean_env())
    assert code == EXIT_STARTUP
    line = only_failure(lines)
    assert line.startswith(
        f"tickgraph: start-up failed: the embedded database (--data-dir = {not_a_dir})"
    )


async def test_a_failure_after_the_database_started_stops_it_again(data_dir: Path) -> None:
    # The signing key is read after the embedded PostgreSQL is up: that server must be
    # stopped again, and the failure still be one line.
    code, lines, _ = await serve(
        "--port",
        "0",
        env=clean_env(
            TICKGRAPH_DATA_DIR=str(data_dir),
            TICKGRAPH_JWT_PRIVATE_KEYS="-----BEGIN PRIVATE KEY-----\nnot a key\n",
        ),
    )
    assert code == EXIT_STARTUP
    line = only_failure(lines)
    assert line.startswith("tickgraph: start-up failed: TICKGRAPH_JWT_PRIVATE_KEYS: "), line
    assert (data_dir / "postgres" / "PG_VERSION").exists()  # it had started
    assert not embedded_postgres_running(data_dir)


async def test_a_signal_during_start_up_stops_cleanly(data_dir: Path) -> None:
    proc = await start_serve("--port", "0", env=clean_env(TICKGRAPH_DATA_DIR=str(data_dir)))
    async with asyncio.timeout(TIMEOUT * 3):
        # The embedded database's directory appears while it is being created.
        while not (data_dir / "postgres").exists():  # noqa: ASYNC110 - a file to appear
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    if "listening" not in out.decode():  # it may just have finished starting
        assert "tickgraph: stopped during start-up" in err.decode()
    assert not embedded_postgres_running(data_dir)


async def test_production_does_not_advertise_graphiql(
    tmp_path: Path, fresh_database_url: str
) -> None:
    env = clean_env(
        TICKGRAPH_ENV="production",
        DATABASE_URL=fresh_database_url,
        TICKGRAPH_DATA_DIR=str(tmp_path),
    )
    async with process("serve", "--port", "0", env=env, ready=LISTENING) as (proc, match):
        line = match.string.strip()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            assert await proc.wait() == 0
    port = match.group(1)
    base = f"http://127.0.0.1:{port}"
    # The board is on in production too: it uses only the public API.
    assert line.endswith(f"(board: {base}/; GraphQL: {base}/graphql; GraphiQL is off)"), line
