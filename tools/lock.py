"""The lock (requirements/lock.txt): what it pins for this interpreter, and how an environment
differs from it.

``make lock`` writes the lock with uv (``uv pip compile --universal``: one file for every
platform and Python >= 3.11, its lines carrying environment markers where they differ);
``make`` installs from it. ``tests/test_make.py`` checks that it satisfies pyproject.toml
and that the Makefile's environment is the locked one.

``python tools/lock.py [LOCK]`` (``make test-latest``) lists the installed distributions
whose version is not the locked one, and those the lock does not name: what a failure of
``make test-latest`` may come from.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parent.parent / "requirements" / "lock.txt"


def pins(lock: Path = LOCK, environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """The version the lock pins for each distribution (by its normalized name), in
    ``environment`` (default: this interpreter's); a line whose marker does not hold here is
    left out."""
    found: dict[str, str] = {}
    for number, raw in enumerate(lock.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"{lock}:{number}: not a pin: {raw!r}")
        if requirement.marker is None or requirement.marker.evaluate(environment):
            found[canonicalize_name(requirement.name)] = specifiers[0].version
    return found


def installed() -> dict[str, str]:
    """The version of each distribution installed in this interpreter's environment."""
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
    }


def differences(lock: Path = LOCK) -> list[str]:
    """One line per installed distribution that is not at its locked version, or that the
    lock does not name (certflow itself excepted)."""
    locked = pins(lock)
    lines = []
    for name, version in sorted(installed().items()):
        if name == "certflow":
            continue
        if name not in locked:
            lines.append(f"{name} {version} (not in the lock)")
        elif locked[name] != version:
            lines.append(f"{name} {locked[name]} -> {version}")
    return lines


def main(argv: Sequence[str]) -> int:
    lock = Path(argv[1]) if len(argv) > 1 else LOCK
    lines = differences(lock)
    print(f"Installed, against {lock}: " + ("the locked versions" if not lines else ""))
    for line in lines:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
