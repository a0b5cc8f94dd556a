"""A persistent vector of small unsigned integers, for per-device state codes.

Why not a dict or a hash-array-mapped trie: a rollout is an immutable value, so changing
one device must not copy the fleet. A 3-level copy-on-write tree of ``array('I')``
chunks (64 x 64 x 256) changes one entry by copying one 1 KiB chunk and two 64-slot
tuples, whatever the fleet size, and stores each device in 4 bytes. Old versions share
every untouched chunk with new ones.

:class:`Transient` is the batch path: it copies each touched chunk once, mutates it in
place, and freezes into a new :class:`CodeVector`; the vector it started from is never
modified.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import TypeAlias

CHUNK_BITS = 8
MID_BITS = 6
CHUNK = 1 << CHUNK_BITS  # entries per chunk
MID = 1 << MID_BITS  # chunks per mid node
_CHUNK_MASK = CHUNK - 1
_MID_MASK = MID - 1
_ROOT_SHIFT = CHUNK_BITS + MID_BITS

Chunk: TypeAlias = "array[int]"  # array('I')
Mid: TypeAlias = tuple[Chunk, ...]


class CodeVector:
    """An immutable sequence of unsigned 32-bit codes with O(1) functional update."""

    __slots__ = ("_len", "_root")

    def __init__(self, root: tuple[Mid, ...], length: int) -> None:
        self._root = root
        self._len = length

    @classmethod
    def from_iterable(cls, codes: Iterable[int]) -> CodeVector:
        """A vector holding ``codes`` in order."""
        flat = array("I", codes)
        chunks = [flat[i : i + CHUNK] for i in range(0, len(flat), CHUNK)]
        root = tuple(tuple(chunks[i : i + MID]) for i in range(0, len(chunks), MID))
        return cls(root, len(flat))

    @classmethod
    def filled(cls, length: int, code: int) -> CodeVector:
        """A vector of ``length`` copies of ``code``."""
        return cls.from_iterable(array("I", [code]) * length)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self._len:
            raise IndexError(index)
        return self._root[index >> _ROOT_SHIFT][(index >> CHUNK_BITS) & _MID_MASK][
            index & _CHUNK_MASK
        ]

    def __iter__(self) -> Iterator[int]:
        for mid in self._root:
            for chunk in mid:
                yield from chunk

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodeVector):
            return NotImplemented
        return self._len == other._len and all(
            a == b for a, b in zip(self.chunks(), other.chunks(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # equal by content, and large

    def __repr__(self) -> str:
        return f"CodeVector(len={self._len})"

    def chunks(self) -> Iterator[Chunk]:
        """The storage chunks in order: a fast way to scan every code."""
        for mid in self._root:
            yield from mid

    def set(self, index: int, code: int) -> CodeVector:
        """A new vector with ``code`` at ``index``; this one is unchanged."""
        if not 0 <= index < self._len:
            raise IndexError(index)
        root = self._root
        r = index >> _ROOT_SHIFT
        m = (index >> CHUNK_BITS) & _MID_MASK
        mid = root[r]
        chunk = mid[m][:]
        chunk[index & _CHUNK_MASK] = code
        mid = (*mid[:m], chunk, *mid[m + 1 :])
        return CodeVector((*root[:r], mid, *root[r + 1 :]), self._len)

    def append(self, code: int) -> CodeVector:
        """A new vector with ``code`` added at the end."""
        transient = self.transient()
        transient.append(code)
        return transient.freeze()

    def map_chunks(self, convert: Callable[[Chunk, int], Chunk]) -> CodeVector:
        """A new vector whose every chunk is ``convert(chunk, index_of_its_first_entry)``.

        For fleet-wide changes; ``convert`` returns the chunk itself to keep it shared,
        or a new chunk of the same length. It must not modify the chunk it is given.
        """
        root = tuple(
            tuple(
                convert(chunk, (r << _ROOT_SHIFT) | (m << CHUNK_BITS))
                for m, chunk in enumerate(mid)
            )
            for r, mid in enumerate(self._root)
        )
        return CodeVector(root, self._len)

    def transient(self) -> Transient:
        """A mutable draft of this vector, for many updates at once."""
        return Transient(self)


class Transient:
    """A mutable draft of a :class:`CodeVector`; :meth:`freeze` returns the result.

    The draft copies a chunk the first time it writes to it and never writes to a chunk
    it did not copy, so the source vector and every other version stay intact.
    """

    __slots__ = ("_len", "owned", "root")

    def __init__(self, source: CodeVector) -> None:
        # Public so that a hot loop can inline the copy-on-write step of __setitem__.
        self.root: list[list[Chunk]] = [list(mid) for mid in source._root]
        self.owned: set[int] = set()  # ids of the chunks this draft copied
        self._len = source._len

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> int:
        return self.root[index >> _ROOT_SHIFT][(index >> CHUNK_BITS) & _MID_MASK][
            index & _CHUNK_MASK
        ]

    def __setitem__(self, index: int, code: int) -> None:
        mid = self.root[index >> _ROOT_SHIFT]
        m = (index >> CHUNK_BITS) & _MID_MASK
        chunk = mid[m]
        if id(chunk) not in self.owned:
            chunk = mid[m] = chunk[:]
            self.owned.add(id(chunk))
        chunk[index & _CHUNK_MASK] = code

    def append(self, code: int) -> None:
        """Add ``code`` at the end."""
        index = self._len
        if index & ((1 << _ROOT_SHIFT) - 1) == 0:
            self.root.append([])
        mid = self.root[-1]
        if index & _CHUNK_MASK == 0:
            chunk = array("I")
            mid.append(chunk)
            self.owned.add(id(chunk))
        else:
            chunk = mid[-1]
            if id(chunk) not in self.owned:
                chunk = mid[-1] = chunk[:]
                self.owned.add(id(chunk))
        chunk.append(code)
        self._len += 1

    def freeze(self) -> CodeVector:
        """The finished vector. The draft must not be used afterwards."""
        vector = CodeVector(tuple(tuple(mid) for mid in self.root), self._len)
        self.owned = set()  # the chunks now belong to the frozen vector
        self.root = [list(mid) for mid in vector._root]
        return vector
