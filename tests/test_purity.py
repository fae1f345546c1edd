"""The pure core stays pure: no module of it reaches an I/O library, directly or through
another module of ours.

The pure core is what the hot path computes with (market state, bars, indicators, the
alert engine, Polygon frame parsing, the trading domain, the paper matching engine).
Keeping it free of I/O is what lets it be tested with plain function calls and run
without an event loop. Imports under ``if TYPE_CHECKING:`` count too: a type from an
I/O library is a dependency on it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("server", "schema", "streams", "brokers")

# Packages whose every module is pure, and single pure modules elsewhere.
PURE_PACKAGES = (
    "server/market",
    "server/indicators",
    "server/alerts",
    "server/trading",
    "brokers/paper",
)
PURE_MODULES = (
    "streams/polygon_protocol.py",
    "streams/events.py",
    "streams/conditions.py",
    "streams/screening.py",
    "brokers/port.py",
    "server/observability/histogram.py",
    # The analysis core: snapshot, result, check, the offline analyst, prompt, pricing.
    # Its I/O (the Anthropic analyst, news, the service) is in the other modules there.
    *(
        f"server/analysis/{name}.py"
        for name in (
            "bracket",
            "check",
            "errors",
            "figures",
            "indicator_set",
            "json_stream",
            "known",
            "offline",
            "offline_rules",
            "port",
            "pricing",
            "prompt",
            "result",
            "snapshot",
            "snapshot_build",
            "stats",
        )
    ),
)

FORBIDDEN = frozenset(
    {
        "asyncio",
        "asyncpg",
        "redis",
        "starlette",
        "uvicorn",
        "websockets",
        "httpx",
        "anthropic",
        "alpaca",
        "aiohttp",
        "requests",
        "urllib3",
        "polygon",
        "pgserver",
        "socket",
        "subprocess",
    }
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def path_of(module: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path, root: Path = ROOT) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports, absolute, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node.lineno
            # `from server.market import bars` imports the module server.market.bars.
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def pure_modules() -> list[Path]:
    found = [ROOT / m for m in PURE_MODULES]
    for package in PURE_PACKAGES:
        directory = ROOT / package
        if directory.is_dir():
            found.extend(sorted(directory.rglob("*.py")))
    return found


def violation(start: Path, root: Path = ROOT) -> str | None:
    """The first chain from ``start`` to a forbidden import, or None."""
    seen: set[Path] = set()
    stack: list[tuple[Path, tuple[str, ...]]] = [(start, (module_name(start, root),))]
    while stack:
        path, chain = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        for target, line in imports_of(path, root):
            top = target.split(".")[0]
            if top in FORBIDDEN:
                where = f"{path.relative_to(root)}:{line}"
                return f"{' -> '.join(chain)} imports {target} ({where})"
            if top in PROJECT:
                dependency = path_of(target, root)
                if dependency is not None and dependency not in seen:
                    stack.append((dependency, (*chain, module_name(dependency, root))))
    return None


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_reaches_no_io_library(path: Path) -> None:
    problem = violation(path)
    assert problem is None, problem


def test_the_check_catches_an_indirect_import(tmp_path: Path) -> None:
    # A pure-looking module whose only import is one of ours that does I/O, two hops away.
    (tmp_path / "server" / "market").mkdir(parents=True)
    (tmp_path / "server" / "__init__.py").write_text("")
    (tmp_path / "server" / "market" / "__init__.py").write_text("")
    (tmp_path / "server" / "market" / "quiet.py").write_text("from . import helper\n")
    (tmp_path / "server" / "market" / "helper.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import redis.asyncio\n"
    )
    problem = violation(tmp_path / "server" / "market" / "quiet.py", tmp_path)
    assert problem == (
        "server.market.quiet -> server.market.helper imports redis.asyncio "
        "(server/market/helper.py:3)"
    )
