"""Run an installer and show how far it is, instead of minutes of silence.

    python3 tools/progress.py --kind pip|npm|apt --label TEXT --log FILE [--total N] -- CMD...

Everything CMD prints goes to FILE; the terminal gets one status line that counts
what the installer reports (pip: packages collected, then installed; npm: packages
fetched of the lock file's total; apt: packages unpacked and set up of the total it
announces). On a terminal the line updates in place; elsewhere (CI logs) it is printed
every few seconds. On failure the end of the log is shown and CMD's status returned.

Standard library only: ./dev runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

PLAIN_EVERY_S = 5.0
TTY_EVERY_S = 0.2


@dataclass
class Count:
    """What the installer has said so far, parsed line by line."""

    kind: str
    total: int | None = None
    collected: int = 0
    fetched: int = 0
    unpacked: int = 0
    set_up: int = 0
    installing: int | None = None
    installed: int | None = None
    current: str = ""
    seen: set[str] = field(default_factory=set)

    def feed(self, line: str) -> None:
        getattr(self, f"_{self.kind}")(line.strip())

    def _pip(self, line: str) -> None:
        if m := re.match(r"Collecting (\S+)", line):
            self.collected += 1
            self.current = m.group(1)
        elif m := re.match(r"Installing collected packages: (.*)", line):
            self.installing = len(m.group(1).split(","))
        elif m := re.match(r"Successfully installed (.*)", line):
            self.installed = len(m.group(1).split())

    def _npm(self, line: str) -> None:
        # npm ci --loglevel=http: "npm http fetch GET 200 https://.../name/-/name-1.0.0.tgz ..."
        if m := re.search(r"http fetch GET \d+ (\S+)", line):
            url = m.group(1)
            if url.endswith(".tgz") and url not in self.seen:
                self.seen.add(url)
                self.fetched += 1
                self.current = url.rsplit("/", 1)[-1].removesuffix(".tgz")
        elif m := re.search(r"added (\d+) packages", line):
            self.installed = int(m.group(1))

    def _apt(self, line: str) -> None:
        if m := re.search(r"(\d+) upgraded, (\d+) newly installed", line):
            self.total = int(m.group(1)) + int(m.group(2))
        elif m := re.match(r"Unpacking (\S+)", line):
            self.unpacked += 1
            self.current = m.group(1)
        elif m := re.match(r"Setting up (\S+)", line):
            self.set_up += 1
            self.current = m.group(1)

    def status(self) -> str:
        of = f"/{self.total}" if self.total else ""
        now = f" ({self.current})" if self.current else ""
        if self.kind == "pip":
            if self.installing is not None:
                return f"installing {_packages(self.installing)}"
            return f"{_packages(self.collected)} resolved{now}"
        if self.kind == "npm":
            return f"{self.fetched}{of} packages fetched{now}"
        return f"{self.unpacked}{of} unpacked, {self.set_up}{of} set up{now}"

    def summary(self) -> str:
        if self.kind == "apt":
            return f"{_packages(self.set_up)} set up"
        done = self.installed if self.installed is not None else self.fetched or self.collected
        return f"{_packages(done)} installed" if done else "up to date"


def _packages(n: int) -> str:
    return f"{n} package" if n == 1 else f"{n} packages"


def run(kind: str, label: str, log_path: str, command: Sequence[str], total: int | None) -> int:
    tty = sys.stderr.isatty()
    count = Count(kind, total)
    start = time.monotonic()
    last_shown = 0.0
    shown_width = 0

    def show(text: str, final: bool = False) -> None:
        nonlocal shown_width
        line = f"\033[1m[dev]\033[0m {label}: {text}" if tty else f"[dev] {label}: {text}"
        if tty:
            pad = max(0, shown_width - len(line))
            sys.stderr.write("\r" + line + " " * pad + ("\n" if final else ""))
            shown_width = 0 if final else len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        pending = b""
        while True:
            selector.select(timeout=TTY_EVERY_S)
            chunk = proc.stdout.read() or b""
            if chunk:
                log.write(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    count.feed(raw.decode(errors="replace"))
            elif proc.poll() is not None:
                break
            now = time.monotonic()
            if now - last_shown >= (TTY_EVERY_S if tty else PLAIN_EVERY_S):
                last_shown = now
                show(f"{count.status()} … {now - start:.0f} s")
        code = proc.wait()
    elapsed = time.monotonic() - start
    if code != 0:
        show(f"failed after {elapsed:.0f} s (exit status {code}); the end of {log_path}:", True)
        with open(log_path, "rb") as written:
            tail = written.read().decode(errors="replace").splitlines()[-30:]
        sys.stderr.write("\n".join("    " + line for line in tail) + "\n")
        return code
    show(f"{count.summary()} in {elapsed:.0f} s", final=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("pip", "npm", "apt"), required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--total", type=int)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    return run(args.kind, args.label, args.log, command, args.total)


if __name__ == "__main__":
    sys.exit(main())
