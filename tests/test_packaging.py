"""The installed package, as a project that depends on it sees it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

USE = """\
from certflow.certs import load

material = load(b"x")
reveal_type(material.leaf)
wrong: int = material
"""


def test_an_editable_install_type_checks_from_outside_the_repository(tmp_path: Path) -> None:
    """mypy, run where a user's project is, finds certflow and its py.typed marker.

    setuptools' default editable install hides the package behind an import hook that
    mypy cannot follow ("Cannot find implementation or library stub"); hatchling's is a
    .pth file naming the project folder (docs/development.md). One deliberate error
    proves the types are really used.
    """
    assert REPOSITORY not in tmp_path.parents
    (tmp_path / "use.py").write_text(USE)
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
         str(tmp_path / "cache"), "use.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert re.fullmatch(r'use\.py:4: note: Revealed type is "cryptography\..*Certificate \| None"',
                        lines[0]), done.stdout + done.stderr  # fmt: skip
    assert lines[1:] == [
        'use.py:5: error: Incompatible types in assignment (expression has type "Material", '
        'variable has type "int")  [assignment]',
        "Found 1 error in 1 file (checked 1 source file)",
    ], done.stdout + done.stderr


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_sqlite_default_imports_no_postgresql_driver() -> None:
    # PostgreSQL is an optional extra: the store and the command line load psycopg only
    # when a postgresql:// URL is opened.
    done = _python(
        "import sys, certflow, certflow.store, certflow.cli\n"
        "from certflow.store import open_store\n"
        "import tempfile, os\n"
        "open_store(os.path.join(tempfile.mkdtemp(), 'x.db')).close()\n"
        "print('psycopg' in sys.modules)"
    )
    assert done.stdout.strip() == "False", done.stderr


def test_without_psycopg_a_postgresql_url_says_which_extra_to_install() -> None:
    # A None entry in sys.modules makes `import psycopg` fail, as on a machine without it.
    done = _python(
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "from certflow.store import StoreError, open_store\n"
        "try:\n"
        "    open_store('postgresql://u:s3cret@localhost/db')\n"
        "except StoreError as error:\n"
        "    print(error)\n"
    )
    assert "pip install 'certflow[postgresql]'" in done.stdout, done.stderr
    assert "s3cret" not in done.stdout + done.stderr
