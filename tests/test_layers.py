"""The package's layering rules that an import contract cannot state.

`make lint` runs import-linter on the contracts in pyproject.toml (the layers, and what
the store and the pure core may not import). This module holds the contract to its
shape (every package in it, the libraries independent of each other) and adds what it
cannot say: no module imports another package's private module (a name component
starting with one underscore), no module is longer than 600 lines, no assert decides
anything, and the core reads no clock.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "certflow"

# The layers, from the top: the command line, the applications (worker, console, demo:
# independent of each other), the three libraries
# (independent of each other: none imports another), the pure core.
LAYERS = [
    "certflow.cli",
    "certflow.worker | certflow.web | certflow.demo",
    "certflow.sim | certflow.store | certflow.certs",
    "certflow.core",
]

# A longer module is split by concern; no module is excepted.
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _private_owner(name: str) -> str | None:
    """The package that owns the first private component of ``name``, if any."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for line, name in _imports(path):
            if not name.startswith("certflow"):
                continue
            owner = _private_owner(name)
            if owner is not None and not (package == owner or package.startswith(owner + ".")):
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert offences == []


def _layers() -> list[str]:
    """The layers of pyproject.toml's layers contract, from the top."""
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [contract["layers"] for contract in contracts if contract["type"] == "layers"]
    return [str(layer) for layer in layers]


def test_the_layers_contract_has_the_documented_shape() -> None:
    assert _layers() == LAYERS


def test_every_package_of_certflow_is_in_exactly_one_layer() -> None:
    # A new folder outside the contract would be free to import anything.
    packages = sorted(f"certflow.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py"))
    named = sorted(part.strip() for layer in _layers() for part in layer.split("|"))
    assert named == packages


def test_no_module_is_longer_than_the_limit() -> None:
    lengths = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    too_long = {path: n for path, n in lengths.items() if n > MAX_LINES}
    assert too_long == {}, f"split by concern: {too_long}"


def test_the_rule_sees_a_private_import_across_packages() -> None:
    assert _private_owner("certflow.certs._files.backup") == "certflow.certs"
    assert _private_owner("certflow.core.evaluator") is None


def test_no_assert_statement_decides_anything_in_the_package() -> None:
    # `python -O` strips asserts: control flow must never depend on one.
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
    ]
    assert found == []


def test_the_pure_core_never_reads_the_clock() -> None:
    # import-linter keeps `time` out of the core; datetime's own clock reads are calls.
    clock = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.func.attr}()"
        for path in sorted((PACKAGE / "core").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in clock
    ]
    assert found == []
