"""The package's layering rules that an import contract cannot state.

`make lint` runs import-linter on the contracts in pyproject.toml (the layers, and what
the pure core may not import). This module adds one rule: no module imports another
package's private module (a name component starting with one underscore).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "certflow"


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
