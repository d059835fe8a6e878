"""A workbook's shared strings, kept in a temporary file rather than in memory.

A sheet refers to its strings by number, in any order, so the whole table must be at hand while
the rows are read. Excel writes every distinct text of a workbook there: a million account rows
hold about four million, which as Python strings took 400 MB. Here they cost their UTF-8 bytes
on disk and four bytes each in memory; a lookup slices a memory map of the file, whose pages are
given back every few thousand lookups so that they never pile up in the process's memory.
"""

from __future__ import annotations

import array
import mmap
import tempfile

# Flushed to the file in pieces of this size while the table is read.
FLUSH_BYTES = 1024 * 1024
# Lookups between two releases of the map's pages: at most this many pages (4 KiB each) are
# mapped in at any time.
RELEASE_EVERY = 4096


class StringTable:
    """Append the strings in order, then ``seal()``; ``table[i]`` is the i-th string."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        # Byte offsets of each string's start, and the end: under 4 GiB, as an upload unpacks
        # to at most 1 GiB.
        self._offsets = array.array("I", [0])
        self._pending = bytearray()
        self._map: mmap.mmap | None = None
        self._lookups = 0

    def append(self, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        self._pending += data
        self._offsets.append(self._offsets[-1] + len(data))
        if len(self._pending) >= FLUSH_BYTES:
            self._flush()

    def seal(self) -> StringTable:
        """Finish the table; no string is appended after."""
        self._flush()
        self._file.flush()
        if self._offsets[-1]:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        return self

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        if index < 0:
            raise IndexError(index)
        start, end = self._offsets[index], self._offsets[index + 1]
        if start == end:
            return ""
        assert self._map is not None
        self._lookups += 1
        if self._lookups % RELEASE_EVERY == 0:
            self._map.madvise(mmap.MADV_DONTNEED)
        return self._map[start:end].decode("utf-8", "surrogatepass")

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._file.close()

    def _flush(self) -> None:
        self._file.write(self._pending)
        self._pending.clear()
