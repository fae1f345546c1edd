"""The front-end files' chain of custody: only what the lock file pins is installed,
each file is hashed, and a missing or altered file is refused, never served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.web import assets
from server.web.assets import AssetsUnavailable, install, is_current, load
from server.web.graphiql import SCRIPTS, STYLESHEETS, page, render


def fake_web(root: Path, version: str = "1.2.3", installed: str | None = None) -> Path:
    """A web/ directory as npm ci leaves it: lock, list, node_modules."""
    web = root / "web"
    (web / "node_modules" / "@scope" / "pkg" / "dist").mkdir(parents=True)
    (web / "node_modules" / "@scope" / "pkg" / "package.json").write_text(
        json.dumps({"name": "@scope/pkg", "version": installed or version})
    )
    (web / "node_modules" / "@scope" / "pkg" / "dist" / "a.js").write_text("console.log(1)\n")
    (web / "package-lock.json").write_text(
        json.dumps({"packages": {"": {}, "node_modules/@scope/pkg": {"version": version}}})
    )
    (web / "assets.txt").write_text("# a comment\n\n@scope/pkg/dist/a.js\n")
    return web


def test_install_copies_listed_files_under_their_pinned_version(tmp_path: Path) -> None:
    web = fake_web(tmp_path)
    vendor = tmp_path / "vendor"
    assert not is_current(web, vendor)
    installed = install(web, vendor)
    asset = installed.get("@scope/pkg/dist/a.js")
    assert asset.path == "@scope/pkg@1.2.3/dist/a.js" and asset.package == "@scope/pkg@1.2.3"
    assert asset.integrity == assets.integrity(b"console.log(1)\n")
    assert installed.url("@scope/pkg/dist/a.js") == "/static/vendor/@scope/pkg@1.2.3/dist/a.js"
    assert is_current(web, vendor) and load(vendor) == installed
    # A changed lock file (an upgrade) makes the installed files stale.
    (web / "package-lock.json").write_text((web / "package-lock.json").read_text() + " ")
    assert not is_current(web, vendor)


def test_a_package_that_is_not_the_pinned_version_is_refused(tmp_path: Path) -> None:
    web = fake_web(tmp_path, version="1.2.3", installed="1.2.4")
    with pytest.raises(AssetsUnavailable, match=r"has @scope/pkg@1.2.4 but the lock pins 1.2.3"):
        install(web, tmp_path / "vendor")


def test_a_missing_or_altered_file_is_refused(tmp_path: Path) -> None:
    vendor = tmp_path / "vendor"
    with pytest.raises(AssetsUnavailable, match="not installed"):
        load(vendor)
    install(fake_web(tmp_path), vendor)
    served = vendor / "@scope/pkg@1.2.3/dist/a.js"
    served.write_text("console.log('not what npm checked')\n")
    with pytest.raises(AssetsUnavailable, match="does not match its recorded sha384"):
        load(vendor)
    served.unlink()
    with pytest.raises(AssetsUnavailable, match="is missing"):
        load(vendor)


def test_the_installed_graphiql_files_are_the_pinned_ones() -> None:
    # ./dev installs them before the tests run (npm ci, then assets install).
    installed = load()
    lock = json.loads((assets.WEB_DIR / "package-lock.json").read_text())["packages"]
    for name in (*STYLESHEETS, *SCRIPTS):
        asset = installed.get(name)
        package, _, version = asset.package.rpartition("@")
        assert lock[f"node_modules/{package}"]["version"] == version
    html = render(installed)
    for name in (*STYLESHEETS, *SCRIPTS):
        assert f'"{installed.url(name)}" integrity="{installed.get(name).integrity}"' in html
    assert "unpkg" not in html and "https://" not in html


def test_missing_files_give_a_page_that_says_how_to_fix_it(tmp_path: Path) -> None:
    html, problem = page(AssetsUnavailable("the front-end files are not installed (x)"))
    assert problem is not None
    assert "GraphiQL is not installed on this server" in html
    assert "the front-end files are not installed (x)" in html
    assert "<code>./dev serve</code>" in html and "python -m server.web.assets install" in html
