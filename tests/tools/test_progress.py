"""The installer progress display: it counts what each installer reports, keeps the
full output in the log, and passes a failure's status through with the log's end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tools.progress import Count, run


def test_pip_lines_count_resolved_then_installed_packages() -> None:
    count = Count("pip")
    for line in ("Collecting strawberry-graphql>=0.327.2", "Collecting uvicorn[standard]"):
        count.feed(line)
    assert count.status() == "2 packages resolved (uvicorn[standard])"
    count.feed("Installing collected packages: a, b, c")
    assert count.status() == "installing 3 packages"
    count.feed("Successfully installed a-1 b-2 c-3")
    assert count.summary() == "3 packages installed"


def test_apt_lines_count_against_the_announced_total() -> None:
    count = Count("apt")
    count.feed("2 upgraded, 3 newly installed, 0 to remove and 7 not upgraded.")
    count.feed("Unpacking chromium (156.0) ...")
    count.feed("Setting up chromium (156.0) ...")
    assert count.status() == "1/5 unpacked, 1/5 set up (chromium)"


def test_npm_lines_count_fetched_tarballs() -> None:
    count = Count("npm", total=107)
    url = "https://registry.npmjs.org/graphiql/-/graphiql-3.8.3.tgz"
    count.feed(f"npm http fetch GET 200 {url} 41ms (cache miss)")
    count.feed(f"npm http fetch GET 200 {url} 1ms (cache hit)")
    assert count.status() == "1/107 packages fetched (graphiql-3.8.3)"
    count.feed("added 107 packages in 11s")
    assert count.summary() == "107 packages installed"


def test_run_logs_everything_and_reports_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "pip.log"
    script = "print('Collecting a'); print('Successfully installed a-1')"
    assert run("pip", "Python packages", str(log), [sys.executable, "-c", script], None) == 0
    assert "Successfully installed a-1" in log.read_text()
    assert "[dev] Python packages: 1 package installed in" in capsys.readouterr().err


def test_a_failure_shows_the_log_and_keeps_the_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = "import sys; print('ERROR: No matching distribution found for nope'); sys.exit(3)"
    code = run(
        "pip", "Python packages", str(tmp_path / "log"), [sys.executable, "-c", script], None
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "failed after" in err and "No matching distribution found for nope" in err
