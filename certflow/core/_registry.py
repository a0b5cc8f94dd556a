"""Name -> implementation tables that refuse a second implementation of one name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

F = TypeVar("F")


class Registry(dict[str, F], Generic[F]):
    """Implementations by declared name; registering a name twice is an error."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        """A decorator that makes the function the implementation of ``name``."""

        def add(function: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} has two implementations")
            self[name] = function
            return function

        return add

    def require_exactly(self, declared: Iterable[str], where: str) -> None:
        """Raise ``ValueError`` unless the declared names are exactly the implemented ones."""
        names = set(declared)
        missing = sorted(names - set(self))
        unused = sorted(set(self) - names)
        if missing or unused:
            raise ValueError(
                f"{where}: {self.kind}s declared without an implementation {missing}, "
                f"implemented but not declared {unused}"
            )
