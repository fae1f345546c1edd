"""Front-end files from pinned npm packages, served by tickgraph itself (never a CDN).

The chain of custody, so a browser only ever runs what the lock file names:

1. ``web/package.json`` pins exact versions and ``web/package-lock.json`` (committed)
   holds each package's sha512; ``npm ci`` checks every tarball against it while
   installing into ``web/node_modules``.
2. ``python -m server.web.assets install`` copies the files listed in
   ``web/assets.txt`` to ``server/web/vendor/<package>@<version>/<path>``, after
   checking that the installed package is the version the lock pins, and writes
   ``vendor/manifest.json`` with each file's sha384.
3. At start-up ``load`` hashes every file again and refuses a missing, truncated or
   edited one; pages name each file with its ``integrity`` so the browser checks it
   too. The version is in the URL, so a file can be cached for good.

``web/node_modules`` and ``server/web/vendor`` are never committed: ``./dev`` and the
Dockerfile run steps 1 and 2. This module uses only the standard library, so it runs
before the project's dependencies are installed (the Docker build stage).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Where the served files live (ignored by git) and the URL they are served under.
VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
WEB_DIR = Path(__file__).resolve().parents[2] / "web"
URL_PREFIX = "/static/vendor"
MANIFEST = "manifest.json"

FIX_COMMAND = "cd web && npm ci --ignore-scripts && cd .. && python -m server.web.assets install"
FIX_HINT = f"run ./dev serve from the repository (it installs them), or: {FIX_COMMAND}"


class AssetsUnavailable(Exception):
    """The front-end files cannot be served; ``str(exc)`` says why."""


@dataclass(frozen=True, slots=True)
class Asset:
    #: As listed in web/assets.txt, e.g. ``graphiql/graphiql.min.js``.
    name: str
    #: Below the vendor directory and the URL prefix: ``graphiql@3.8.3/graphiql.min.js``.
    path: str
    #: Subresource-integrity value: ``sha384-<base64>``.
    integrity: str
    #: ``graphiql@3.8.3``.
    package: str


@dataclass(frozen=True, slots=True)
class Assets:
    directory: Path
    files: dict[str, Asset]

    def get(self, name: str) -> Asset:
        try:
            return self.files[name]
        except KeyError:
            raise AssetsUnavailable(f"{name} is not in web/assets.txt") from None

    def url(self, name: str) -> str:
        return f"{URL_PREFIX}/{self.get(name).path}"

    def by_path(self, path: str) -> Asset | None:
        for asset in self.files.values():
            if asset.path == path:
                return asset
        return None


def integrity(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def load(directory: Path = VENDOR_DIR) -> Assets:
    """The installed files, each checked against the manifest's hash."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["files"]
    except FileNotFoundError:
        raise AssetsUnavailable(f"the front-end files are not installed ({directory})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AssetsUnavailable(f"{manifest_path} is unreadable: {exc}") from None
    files: dict[str, Asset] = {}
    for name, entry in entries.items():
        asset = Asset(name, entry["path"], entry["integrity"], entry["package"])
        try:
            data = (directory / asset.path).read_bytes()
        except OSError:
            raise AssetsUnavailable(f"{asset.path} is missing from {directory}") from None
        if integrity(data) != asset.integrity:
            raise AssetsUnavailable(f"{asset.path} does not match its recorded sha384") from None
        files[name] = asset
    return Assets(directory, files)


def fingerprint(web_dir: Path) -> str:
    """What the installed files were made from: the lock file and the list of files."""
    digest = hashlib.sha256()
    for name in ("package-lock.json", "assets.txt"):
        digest.update((web_dir / name).read_bytes())
    return digest.hexdigest()


def is_current(web_dir: Path = WEB_DIR, directory: Path = VENDOR_DIR) -> bool:
    """Whether ``install`` has run for the current lock file and list (cheap: no hashing)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("source") != fingerprint(web_dir):
            return False
        return all((directory / e["path"]).is_file() for e in manifest["files"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def listed(web_dir: Path) -> list[tuple[str, str, str]]:
    """``(name, package, path inside the package)`` for each line of assets.txt."""
    out = []
    for number, raw in enumerate((web_dir / "assets.txt").read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = PurePosixPath(line).parts
        size = 2 if line.startswith("@") else 1
        if len(parts) <= size or ".." in parts or line.startswith("/"):
            raise AssetsUnavailable(f"assets.txt line {number}: expected <package>/<path>: {line}")
        out.append((line, "/".join(parts[:size]), "/".join(parts[size:])))
    return out


def install(web_dir: Path = WEB_DIR, directory: Path = VENDOR_DIR) -> Assets:
    """Copy the listed files out of ``web_dir/node_modules`` (after ``npm ci``)."""
    try:
        lock = json.loads((web_dir / "package-lock.json").read_text())["packages"]
    except (OSError, ValueError, KeyError) as exc:
        raise AssetsUnavailable(f"cannot read {web_dir / 'package-lock.json'}: {exc}") from None
    staging = directory.with_name(directory.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    files: dict[str, dict[str, str]] = {}
    for name, package, inner in listed(web_dir):
        pinned = lock.get(f"node_modules/{package}", {}).get("version")
        if pinned is None:
            raise AssetsUnavailable(
                f"{package} is not in web/package-lock.json: npm install --save-exact it in web/"
            )
        source = web_dir / "node_modules" / package
        try:
            installed = json.loads((source / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            raise AssetsUnavailable(f"{package} is not installed: run npm ci in web/") from None
        if installed != pinned:
            raise AssetsUnavailable(
                f"web/node_modules has {package}@{installed} but the lock pins {pinned}: "
                "run npm ci in web/"
            )
        try:
            data = (source / inner).read_bytes()
        except OSError:
            raise AssetsUnavailable(f"{package}@{pinned} has no file {inner}") from None
        path = f"{package}@{pinned}/{inner}"
        target = staging / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        files[name] = {
            "path": path,
            "integrity": integrity(data),
            "package": f"{package}@{pinned}",
        }
    manifest = {"source": fingerprint(web_dir), "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return load(directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.web.assets",
        description="Install (after npm ci in web/) or check the front-end files tickgraph serves.",
    )
    parser.add_argument("action", choices=("install", "check"))
    parser.add_argument("--web", type=Path, default=WEB_DIR, help="the npm project (web/)")
    parser.add_argument("--vendor", type=Path, default=VENDOR_DIR, help="where files go")
    args = parser.parse_args(argv)
    if args.action == "check":
        return 0 if is_current(args.web, args.vendor) else 1
    try:
        assets = install(args.web, args.vendor)
    except AssetsUnavailable as exc:
        print(f"front-end files: {exc}", file=sys.stderr)
        return 1
    packages = sorted({a.package for a in assets.files.values()})
    print(f"front-end files: {len(assets.files)} from {', '.join(packages)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
