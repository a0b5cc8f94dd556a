"""Every `make` target works from a fresh clone, installs from the lock, and the lock fits
pyproject.toml: cheaply, by `make -n` (which prints a target's commands and runs none) in a
copy of the files git tracks, and by reading the lock."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.lock import installed, pins

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()
LOCK = ROOT / "requirements" / "lock.txt"
TOOLS = ROOT / "requirements" / "tools.in"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PHONY = sorted(
    {t for line in re.findall(r"^\.PHONY:(.*)$", MAKEFILE, re.MULTILINE) for t in line.split()}
)
# What the recipes make, rather than read: the environments, mutmut's copy, the site.
MADE = (".venv", ".venv-latest", "mutants", "site")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git tracks, as they are in the work tree: what a fresh clone of this work
    has once committed (an untracked file the Makefile needs is missing here, as there)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git work tree")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    folder = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # tracked, but maybe deleted in the work tree
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    return folder


def make_n(folder: Path, *targets: str) -> str:
    """What ``make -n TARGETS`` would run in ``folder`` (it runs none of it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        ["make", "-n", *targets], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), f"make -n {' '.join(targets)} prints nothing"
    return done.stdout


def commands(output: str) -> Iterator[list[str]]:
    """Each simple command of ``make -n``'s output, as words, without leading assignments."""
    for line in output.splitlines():
        for part in re.split(r"\s(?:\|\||&&|;|\|)\s", line):
            words = shlex.split(part)
            while words and re.fullmatch(r"\w+=.*", words[0]):
                words.pop(0)
            if words:
                yield words


def test_every_target_is_phony_and_has_a_recipe() -> None:
    defined = set(re.findall(r"^([\w-]+):(?!=)", MAKEFILE, re.MULTILINE))
    assert defined == set(PHONY)
    assert {"demo", "test", "lock", "test-latest", "mutate", "bench", "docs"} <= defined


@pytest.mark.parametrize("target", PHONY)
def test_each_target_runs_from_a_fresh_clone(target: str, clone: Path) -> None:
    """``make -n TARGET`` succeeds in a fresh clone, and everything its commands name is
    there: the files and folders, the modules of ``python -c`` code, and the programs of
    the environment (installed here, or named by the lock for the targets that add them)."""
    output = make_n(clone, target)
    console_scripts = {
        entry.name for entry in importlib.metadata.entry_points(group="console_scripts")
    }
    locked = set(pins(LOCK))
    for words in commands(output):
        program = words[0]
        if program.startswith((".venv/bin/", ".venv-latest/bin/")):
            name = program.rsplit("/", 1)[1]
            assert name == "python" or name in console_scripts or name in locked, program
        for word in words:
            for path in re.findall(r"(?<![\w./$-])([\w.-]+(?:/[\w.-]+)+)/?", word):
                if not path.startswith(MADE):
                    assert (clone / path).exists(), f"make {target}: no {path} in a clone"
        if program.endswith("/python") and "-c" in words:
            code = words[words.index("-c") + 1]
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                        node.module or ""
                    ]  # fmt: skip
                    for module in names:
                        parts = module.split(".")
                        if (clone / parts[0]).is_dir():
                            here = clone.joinpath(*parts)
                            assert (
                                here.with_suffix(".py").is_file()
                                or (here / "__init__.py").is_file()
                            ), f"make {target}: no module {module} in a clone"


@pytest.mark.parametrize("target", PHONY)
def test_each_target_installs_from_the_lock_but_test_latest(target: str, clone: Path) -> None:
    installs = [
        words for words in commands(make_n(clone, target)) if words[1:4] == ["-m", "pip", "install"]
    ]
    for words in installs:
        if target == "test-latest":
            assert "-c" not in words, words
            assert "--upgrade" in words, words
        else:
            assert words[words.index("-c") + 1] == "requirements/lock.txt", words


def test_a_changed_lock_or_pyproject_rebuilds_the_environment(clone: Path) -> None:
    stamp = clone / ".venv" / ".installed-stamp"
    stamp.parent.mkdir(exist_ok=True)
    stamp.touch()
    later = time.time() + 60
    os.utime(stamp, (later, later))
    assert "pip install" not in make_n(clone, "unit")
    for changed in ("requirements/lock.txt", "pyproject.toml"):
        later += 60
        os.utime(clone / changed, (later, later))
        output = make_n(clone, "unit")
        assert "venv --clear .venv" in output, changed
        assert "install --quiet -c requirements/lock.txt --no-build-isolation -e" in output
        later += 60
        os.utime(stamp, (later, later))


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    texts = [
        *project["dependencies"],
        *(r for e in project["optional-dependencies"].values() for r in e),
    ]
    return [Requirement(text) for text in texts]


def test_the_package_asks_for_ranges_never_pins() -> None:
    # A library's users must be free to install newer releases: lower bounds, no pins.
    for requirement in _requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & {">=", ">"}, f"{requirement}: no lower bound"
        assert not operators & {"==", "==="}, f"{requirement}: a pin"


# Where the lock must hold: it is resolved for every platform and Python >= 3.11.
ENVIRONMENTS: dict[str, dict[str, str]] = {
    "here": {},
    "3.11.0": {"python_version": "3.11", "python_full_version": "3.11.0"},
    "3.13 on Windows": {
        "python_version": "3.13", "python_full_version": "3.13.1", "sys_platform": "win32",
        "platform_system": "Windows", "os_name": "nt",
    },
    "3.12 on macOS": {
        "python_version": "3.12", "python_full_version": "3.12.4", "sys_platform": "darwin",
        "platform_system": "Darwin", "platform_machine": "arm64",
    },
}  # fmt: skip


@pytest.mark.parametrize("where", ENVIRONMENTS)
def test_the_lock_pins_a_version_in_range_for_every_requirement(where: str) -> None:
    here = {key: str(value) for key, value in default_environment().items()}
    environment = {**here, **ENVIRONMENTS[where]}
    locked = pins(LOCK, environment)
    tools = [line.split("#")[0].strip() for line in TOOLS.read_text().splitlines()]
    requirements = [
        *_requirements(),
        *(Requirement(r) for r in PYPROJECT["build-system"]["requires"]),
        *(Requirement(line) for line in tools if line),
    ]
    stale = [
        f"{r} (locked: {locked.get(canonicalize_name(r.name))})"
        for r in requirements
        if (r.marker is None or r.marker.evaluate(environment))
        and locked.get(canonicalize_name(r.name), "none") not in r.specifier
    ]
    assert stale == [], "the lock is stale: run `make lock`"


def test_the_environment_make_built_is_the_lock() -> None:
    if not (Path(sys.prefix) / ".installed-stamp").exists():
        pytest.skip("not an environment that make installed from the lock")
    here = installed()
    wrong = [
        f"{name} {here[name]}, locked {version}"
        for name, version in pins(LOCK).items()
        if name in here and here[name] != version
    ]
    assert wrong == [], "rm .venv/.installed-stamp and run make again"
    assert "setuptools" not in here  # Python 3.11's venv adds one; make takes it out


def _local_imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_mutmut_copies_every_local_package_the_core_tests_import() -> None:
    """`make mutate` runs the core's tests inside mutants/, where mutmut copies only what it
    is told (and tests/, pyproject.toml): every local package those tests import, however
    indirectly (tests/conftest.py's PostgreSQL server in tools/), must be among them."""
    config = PYPROJECT["tool"]["mutmut"]
    copied = {"tests"} | {
        Path(p).parts[0] for p in [*config["source_paths"], *config.get("also_copy", [])]
    }
    selection = [ROOT / p for p in config["pytest_add_cli_args_test_selection"]]
    queue = [ROOT / "tests" / "conftest.py", ROOT / "tests" / "__init__.py"]
    queue += [f for folder in selection for f in sorted(folder.rglob("*.py"))]
    seen: set[Path] = set()
    needed: set[str] = set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _local_imports(path):
            here = ROOT.joinpath(*module.split("."))
            for found in (here.with_suffix(".py"), here / "__init__.py"):
                if found.is_file():
                    needed.add(module.split(".")[0])
                    queue.append(found)
    assert "tools" in needed  # the PostgreSQL server of tests/conftest.py
    assert needed <= copied, f"add {sorted(needed - copied)} to [tool.mutmut] also_copy"


PROBE = compile("import warnings\nwarnings.warn('old', CATEGORY, stacklevel=1)", "probe", "exec")


@pytest.mark.parametrize("category", ["DeprecationWarning", "CryptographyDeprecationWarning"])
def test_a_deprecation_warning_raised_by_certflow_code_is_an_error(category: str) -> None:
    """pyproject.toml's filterwarnings: in certflow's modules (and the tests', tools'...) a
    deprecation is an error, in any other module only a warning."""
    from cryptography.utils import CryptographyDeprecationWarning

    kind = {"CryptographyDeprecationWarning": CryptographyDeprecationWarning}.get(
        category, DeprecationWarning
    )
    for module in ("certflow.certs._probe", "tests.probe", "tools.probe", "examples"):
        with pytest.raises(kind):
            exec(PROBE, {"__name__": module, "CATEGORY": kind})
    with warnings.catch_warnings(record=True) as caught:  # the filters stay as they are
        for module in ("somelib.mod", "certflowx", "cryptography.x509"):
            exec(PROBE, {"__name__": module, "CATEGORY": kind})
    assert len(caught) == 3
