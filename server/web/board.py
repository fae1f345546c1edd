"""The live trading board at ``/``: a static page, a stylesheet and ES modules from
``server/web/board/`` (no build step), plus the chart library from the pinned npm files.

Every file is read once at start-up and served from memory, by an allow-list (nothing
outside the directory can be named). The page goes out with a strict
Content-Security-Policy: scripts and styles from this server only (no inline code, no
``eval``), connections only to this origin (HTTP and its WebSocket), and no framing.
The board's own files are not versioned in their URL, so browsers revalidate them
(``no-cache`` with an ETag, answered 304 when unchanged); the chart library's URL holds
its version and is cached for good by the vendor route.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from server.web.assets import Assets, AssetsUnavailable
from server.web.missing import render_missing

BOARD_DIR = Path(__file__).resolve().parent / "board"
URL_PREFIX = "/board"
#: Classic scripts the modules use (``window.LightweightCharts``), loaded before them.
SCRIPTS = ("lightweight-charts/dist/lightweight-charts.standalone.production.js",)

_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

#: 'self' in connect-src covers the same origin's ws:/wss: (CSP level 3).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
PAGE_HEADERS = {
    **_SECURITY,
    "content-security-policy": CONTENT_SECURITY_POLICY,
    # The page names the chart library by version and integrity: always the current one.
    "cache-control": "no-cache",
}
#: The page shown when the chart library is missing: no script at all, inline style.
_MISSING_HEADERS = {
    **_SECURITY,
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "cache-control": "no-store",
}


@dataclass(frozen=True, slots=True)
class BoardFile:
    body: bytes
    content_type: str
    etag: str


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def read_files(directory: Path = BOARD_DIR) -> dict[str, BoardFile]:
    """Every servable file below ``directory`` by its relative URL path."""
    files: dict[str, BoardFile] = {}
    for path in sorted(directory.rglob("*")):
        content_type = _CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        data = path.read_bytes()
        name = PurePosixPath(path.relative_to(directory).as_posix())
        files[str(name)] = BoardFile(data, content_type, _etag(data))
    return files


def render(assets: Assets, directory: Path = BOARD_DIR) -> str:
    """index.html with the chart library's URL and integrity; ``AssetsUnavailable`` if
    it is not installed."""
    scripts = "\n  ".join(
        f'<script src="{assets.url(n)}" integrity="{assets.get(n).integrity}"></script>'
        for n in SCRIPTS
    )
    return (directory / "index.html").read_text().replace("<!-- tickgraph:scripts -->", scripts)


@dataclass(frozen=True, slots=True)
class Board:
    html: str
    files: dict[str, BoardFile]
    #: Why the board cannot work (its chart library is missing), or None.
    problem: AssetsUnavailable | None

    @classmethod
    def load(cls, assets: Assets | AssetsUnavailable, directory: Path = BOARD_DIR) -> Board:
        files = read_files(directory)
        if isinstance(assets, AssetsUnavailable):
            return cls(render_missing("The board", assets), files, assets)
        try:
            return cls(render(assets, directory), files, None)
        except AssetsUnavailable as problem:
            return cls(render_missing("The board", problem), files, problem)

    def page(self) -> Response:
        if self.problem is not None:
            return HTMLResponse(self.html, status_code=503, headers=_MISSING_HEADERS)
        return HTMLResponse(self.html, headers=PAGE_HEADERS)

    def file(self, request: Request, path: str) -> Response:
        found = self.files.get(path)
        if found is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        headers = {**_SECURITY, "cache-control": "no-cache", "etag": found.etag}
        if found.etag in _tags(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        return Response(found.body, headers={**headers, "content-type": found.content_type})


def _tags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")}
