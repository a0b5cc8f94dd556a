"""The Mermaid script that the documentation site serves itself, so that its diagrams draw
where the reader's browser reaches nothing outside.

MkDocs Material draws the ``mermaid`` code blocks with mermaid.js, which it fetches from a
CDN at page load, unless a global ``mermaid`` is already defined. The site lists this copy in
``extra_javascript`` (``mkdocs.yml``), so Material draws with it and never goes out.

``python tools/vendor_mermaid.py`` (run by ``make site``, ``make docs``, ``make unit``)
writes :data:`TARGET`, which git ignores: the standalone ``dist/mermaid.min.js`` of the npm
package ``mermaid`` at :data:`VERSION`, fetched with the machine's own npm (``npm pack``, from
whatever registry npm is configured with) and checked against :data:`SHA256`. It does
nothing when the file is already there with that hash. Only the standard library: it runs
before the environment is built, with any Python 3.

As an MkDocs hook (``mkdocs.yml``) it fails the build when the file is missing or differs,
rather than let the pages fall back to the CDN.

To move to another release: set :data:`VERSION`, run this script; it refuses the file and
prints its SHA-256; check that release, then put the hash in :data:`SHA256`. Stay on the
major version Material asks for (``mermaid@11`` in its bundle; ``tests/test_site.py``
compares them).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "mermaid"
VERSION = "11.17.2"
MEMBER = "package/dist/mermaid.min.js"
SHA256 = "581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8"

ROOT = Path(__file__).resolve().parent.parent
# Where mkdocs.yml's extra_javascript finds it: docs/javascripts/vendor/mermaid.min.js.
SITE_PATH = "javascripts/vendor/mermaid.min.js"
TARGET = ROOT / "docs" / SITE_PATH


class VendorError(Exception):
    """The pinned script could not be fetched, or is not the pinned one."""


def digest(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def problem(target: Path = TARGET) -> str | None:
    """Why ``target`` is not the pinned script, or None when it is."""
    how = "run `make site` (or `python tools/vendor_mermaid.py`; it needs npm)"
    if not target.is_file():
        return f"{target} is missing: {how}"
    if digest(target) != SHA256:
        return f"{target} is not mermaid {VERSION} (SHA-256 {SHA256}): {how}"
    return None


def fetch(target: Path = TARGET) -> None:
    """Write the pinned script to ``target`` with npm, unless it is there already."""
    if problem(target) is None:
        target.touch()  # newer than this script, for make
        return
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(
            f"npm not found: the site's diagrams need mermaid {VERSION} from npm "
            "(Debian/Ubuntu: apt-get install npm)"
        )
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent", "--ignore-scripts"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        tarballs = sorted(Path(folder).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise VendorError(
                f"npm pack {PACKAGE}@{VERSION} failed: {done.stderr.strip() or done.stdout}"
            )
        with tarfile.open(tarballs[0]) as archive:
            member = archive.extractfile(MEMBER)
            if member is None:
                raise VendorError(f"{PACKAGE}@{VERSION} has no {MEMBER}")
            data = member.read()
    found = hashlib.sha256(data).hexdigest()
    if found != SHA256:
        raise VendorError(
            f"{PACKAGE}@{VERSION} {MEMBER} has SHA-256 {found}, not the pinned {SHA256}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def on_config(config: Any, **_: Any) -> Any:
    """The MkDocs hook: no site without the pinned script in its ``docs_dir``."""
    from mkdocs.exceptions import PluginError

    wrong = problem(Path(config["docs_dir"]) / SITE_PATH)
    if wrong is not None:
        raise PluginError(wrong)
    return config


def main() -> int:
    try:
        fetch()
    except (VendorError, OSError, subprocess.SubprocessError) as error:
        print(f"tools/vendor_mermaid.py: {error}", file=sys.stderr)
        return 1
    print(f"{TARGET.relative_to(ROOT)}: mermaid {VERSION}, SHA-256 verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
