"""A persistent vector of small unsigned integers, for per-device state codes.

Why not a dict or a hash-array-mapped trie: a rollout is an immutable value, so changing
one device must not copy the fleet. A 3-level copy-on-write tree of ``array('I')``
chunks (root -> 64 chunks per mid node -> 256 codes per chunk) changes one entry by
copying one 1 KiB chunk and two short lists, whatever the fleet size, and stores each
device in 4 bytes. Old versions share every untouched chunk with new ones.

The tree's lists are never mutated once a vector holds them (they are lists rather than
tuples only because copying a list and assigning one slot is the cheapest way to make
the next version). :class:`Transient` is the batch path: it copies each touched chunk
once, mutates it in place, and freezes into a new :class:`CodeVector`; the vector it
started from is never modified.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import TypeAlias

CHUNK_BITS = 8
MID_BITS = 6
CHUNK = 1 << CHUNK_BITS  # entries per chunk
MID = 1 << MID_BITS  # chunks per mid node
CHUNK_MASK = CHUNK - 1
MID_MASK = MID - 1
ROOT_SHIFT = CHUNK_BITS + MID_BITS

Chunk: TypeAlias = "array[int]"  # array('I')
Root: TypeAlias = list[list[Chunk]]


class CodeVector:
    """An immutable sequence of unsigned 32-bit codes with O(1) functional update."""

    __slots__ = ("_len", "root")

    def __init__(self, root: Root, length: int) -> None:
        self.root = root  # read-only: see the module docstring
        self._len = length

    @classmethod
    def from_iterable(cls, codes: Iterable[int]) -> CodeVector:
        """A vector holding ``codes`` in order."""
        flat = array("I", codes)
        chunks = [flat[i : i + CHUNK] for i in range(0, len(flat), CHUNK)]
        root = [chunks[i : i + MID] for i in range(0, len(chunks), MID)]
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
        return self.root[index >> ROOT_SHIFT][(index >> CHUNK_BITS) & MID_MASK][index & CHUNK_MASK]

    def __iter__(self) -> Iterator[int]:
        for mid in self.root:
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
        for mid in self.root:
            yield from mid

    def set(self, index: int, code: int) -> CodeVector:
        """A new vector with ``code`` at ``index``; this one is unchanged."""
        if not 0 <= index < self._len:
            raise IndexError(index)
        return CodeVector(set_code(self.root, index, code), self._len)

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
        root = [
            [convert(chunk, (r << ROOT_SHIFT) | (m << CHUNK_BITS)) for m, chunk in enumerate(mid)]
            for r, mid in enumerate(self.root)
        ]
        return CodeVector(root, self._len)

    def transient(self) -> Transient:
        """A mutable draft of this vector, for many updates at once."""
        return Transient(self)


def set_code(root: Root, index: int, code: int) -> Root:
    """The root of a tree equal to ``root`` but for ``code`` at ``index`` (no bounds check).

    The evaluator's one-device path calls this directly: it is the whole cost of a
    persistent update, one chunk and two short lists copied.
    """
    r = index >> ROOT_SHIFT
    mid = root[r][:]
    m = (index >> CHUNK_BITS) & MID_MASK
    chunk = mid[m][:]
    chunk[index & CHUNK_MASK] = code
    mid[m] = chunk
    root = root[:]
    root[r] = mid
    return root


class Transient:
    """A mutable draft of a :class:`CodeVector`; :meth:`freeze` returns the result.

    The draft copies a mid node and a chunk the first time it writes below them
    (``own``) and never writes to one it did not copy, so the source vector and every
    other version stay intact. Starting a draft copies only the root list (one slot per
    16,384 codes), so a draft that changes one code costs what :func:`set_code` costs.
    """

    __slots__ = ("_len", "_owned_mids", "owned", "root")

    def __init__(self, source: CodeVector) -> None:
        self.root: Root = source.root[:]
        self._owned_mids: set[int] = set()
        # Chunks this draft copied, by chunk number (index >> CHUNK_BITS); public so a
        # hot loop can look a chunk up here before calling ``own``.
        self.owned: dict[int, Chunk] = {}
        self._len = len(source)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> int:
        return self.root[index >> ROOT_SHIFT][(index >> CHUNK_BITS) & MID_MASK][index & CHUNK_MASK]

    def _mid(self, r: int) -> list[Chunk]:
        if r not in self._owned_mids:
            self.root[r] = self.root[r][:]
            self._owned_mids.add(r)
        return self.root[r]

    def own(self, number: int) -> Chunk:
        """Chunk ``number`` (``index >> CHUNK_BITS``), copied once so it may be written."""
        chunk = self.owned.get(number)
        if chunk is None:
            mid = self._mid(number >> MID_BITS)
            chunk = self.owned[number] = mid[number & MID_MASK] = mid[number & MID_MASK][:]
        return chunk

    def __setitem__(self, index: int, code: int) -> None:
        self.own(index >> CHUNK_BITS)[index & CHUNK_MASK] = code

    def append(self, code: int) -> None:
        """Add ``code`` at the end."""
        index = self._len
        if index & ((1 << ROOT_SHIFT) - 1) == 0:
            self.root.append([])
            self._owned_mids.add(len(self.root) - 1)
        if index & CHUNK_MASK == 0:
            chunk = array("I")
            self._mid(len(self.root) - 1).append(chunk)
            self.owned[index >> CHUNK_BITS] = chunk
        else:
            chunk = self.own(index >> CHUNK_BITS)
        chunk.append(code)
        self._len += 1

    def freeze(self) -> CodeVector:
        """The finished vector. The draft may go on; it copies again before writing."""
        vector = CodeVector(self.root, self._len)
        self.root = self.root[:]
        self._owned_mids = set()
        self.owned = {}
        return vector
