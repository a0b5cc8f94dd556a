"""The console's templates and stylesheet are package data: the wheel carries every one,
so that `pip install 'certflow[web]'` serves the same pages as the repository."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
WEB = REPOSITORY / "certflow" / "web"


def test_the_wheel_holds_every_template_and_the_stylesheet(tmp_path: Path) -> None:
    # pip builds the wheel as a user's install would. The locked environment has the
    # locked hatchling (no isolation: nothing fetched); `make test-latest`'s has none,
    # so pip fetches the newest allowed by pyproject.toml's build-system, as a user's pip does.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation,
         "-w", str(tmp_path), str(REPOSITORY)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("certflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = sorted(
        str(path.relative_to(REPOSITORY))
        for folder in ("templates", "static")
        for path in (WEB / folder).iterdir()
    )
    assert "certflow/web/templates/details.html" in data
    assert "certflow/web/static/console.css" in data
    assert [name for name in data if name not in names] == []
