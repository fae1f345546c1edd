"""./dev as a newcomer meets it: help that lists every command and installs nothing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from server.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def dev(*args: str, venv: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TICKGRAPH_VENV": str(venv)}
    return subprocess.run(
        ["bash", str(ROOT / "dev"), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def tickgraph_commands() -> set[str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)  # type: ignore[arg-type]


def test_help_lists_every_command_and_installs_nothing(tmp_path: Path) -> None:
    for flag in ("help", "--help", "-h"):
        shown = dev(flag, venv=tmp_path / "venv")
        assert shown.returncode == 0, shown.stderr
        listed = set(re.findall(r"^  ([a-z]+)\b", shown.stdout, re.MULTILINE))
        assert listed >= tickgraph_commands() | {"test", "lint", "help"}, shown.stdout
    assert not (tmp_path / "venv").exists()


def test_test_help_explains_the_suite_and_installs_nothing(tmp_path: Path) -> None:
    shown = dev("test", "--help", venv=tmp_path / "venv")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: ./dev test [PYTEST ARGS]")
    assert "CI=true" in shown.stdout and "chromium" in shown.stdout
    assert not (tmp_path / "venv").exists()


def test_a_command_s_help_before_set_up_says_how_to_get_it(tmp_path: Path) -> None:
    shown = dev("serve", "--help", venv=tmp_path / "venv")
    assert shown.returncode == 0
    assert "./dev serve --help shows its options" in shown.stdout
    assert not (tmp_path / "venv").exists()
