"""One xlsx from parts deflated separately: splice raw deflate streams into a zip member.

A deflate stream that ends with a sync flush (not a final block) can be followed by another,
so parts compressed in different processes join into one member without compressing twice;
their CRC-32s combine arithmetically (zlib's crc32_combine, which Python's zlib lacks).
"""

from __future__ import annotations

import re
import struct
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from isal import isal_zlib

from exporter.errors import FileTooLarge

COPY_CHUNK_BYTES = 1 << 20
DEFLATE_LEVEL = 6  # zipfile's (and so xlsxwriter's) default
STREAM_DEFLATE_LEVEL = 1  # ISA-L's fastest (DeflateStream)
ZIP32_LIMIT = 0xFFFFFFFF
_CRC32_POLYNOMIAL = 0xEDB88320
_SHEET_NAME = re.compile(r"^xl/worksheets/sheet(\d+)\.xml$")
_DIMENSION = re.compile(rb'<dimension ref="A1:([A-Z]+)1"/>')


@dataclass(frozen=True)
class Deflated:
    """Raw deflate data (no final block) of ``size`` bytes whose CRC-32 is ``crc``."""

    path: Path | None
    data: bytes
    crc: int
    size: int
    compressed_size: int


@dataclass(frozen=True)
class SheetRows:
    """The data rows of one sheet of the finished workbook: how many, and their parts in order."""

    rows: int
    parts: Sequence[Deflated]


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, index = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[index]
        vector >>= 1
        index += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of A+B from the CRC-32 of A, of B, and B's length (zlib's algorithm)."""
    if length2 == 0:
        return crc1
    odd = [_CRC32_POLYNOMIAL] + [1 << n for n in range(31)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


class DeflateStream:
    """Compresses chunks into ``target`` as one stream that another stream may follow.

    ISA-L at its fastest level: 800 MB/s of sheet XML on one core, 5.5 times zlib's level 1,
    and smaller (17.0 % of the XML against 17.9 %; zlib's level 6 makes 14.6 % at 57 MB/s).
    It lets go of the GIL while it works, so a thread can compress while the next chunk is read.
    """

    def __init__(self, target: Path) -> None:
        self._target = target
        self._file = target.open("wb")
        self._compressor = isal_zlib.compressobj(
            STREAM_DEFLATE_LEVEL, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS
        )
        self._crc = self._size = self._written = 0

    def write(self, chunk: bytes) -> None:
        """Add ``chunk``; one call at a time."""
        self._crc = isal_zlib.crc32(chunk, self._crc)
        self._size += len(chunk)
        self._written += self._file.write(self._compressor.compress(chunk))

    def finish(self) -> Deflated:
        """End the stream with a sync flush (not a final block) and close the file."""
        with self._file:
            self._written += self._file.write(self._compressor.flush(isal_zlib.Z_SYNC_FLUSH))
        return Deflated(self._target, b"", self._crc, self._size, self._written)

    def close(self) -> None:
        """Close the file of a stream that will not be finished."""
        self._file.close()


def deflate_bytes(data: bytes, *, final: bool) -> Deflated:
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH
    )
    return Deflated(None, body, zlib.crc32(data), len(data), len(body))


class _ZipWriter:
    """Writes members whose compressed bytes and CRC are known before their header."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._central: list[bytes] = []
        self._offset = 0
        stamp = time.localtime()
        self._time = stamp.tm_hour << 11 | stamp.tm_min << 5 | stamp.tm_sec // 2
        self._date = (stamp.tm_year - 1980) << 9 | stamp.tm_mon << 5 | stamp.tm_mday

    def add(self, name: str, pieces: Sequence[Deflated]) -> None:
        crc = 0
        size = compressed = 0
        for piece in pieces:
            crc = crc32_combine(crc, piece.crc, piece.size)
            size += piece.size
            compressed += piece.compressed_size
        if max(size, compressed, self._offset) > ZIP32_LIMIT:
            raise FileTooLarge("the workbook is larger than 4 GiB; narrow the filters")
        encoded = name.encode()
        fields = (20, 0, zipfile.ZIP_DEFLATED, self._time, self._date, crc, compressed, size)
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, len(encoded), 0) + encoded
        self._central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                *fields,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                self._offset,
            )
            + encoded
        )
        self._sink.write(header)
        self._offset += len(header) + compressed
        for piece in pieces:
            if piece.path is None:
                self._sink.write(piece.data)
                continue
            with piece.path.open("rb") as part:
                while chunk := part.read(COPY_CHUNK_BYTES):
                    self._sink.write(chunk)

    def finish(self) -> None:
        directory = b"".join(self._central)
        self._sink.write(directory)
        count = len(self._central)
        self._sink.write(
            struct.pack(
                "<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), self._offset, 0
            )
        )


def assemble_workbook(frame: Path, sheets: Sequence[SheetRows], target: Path) -> None:
    """Write ``target``: the ``frame`` workbook (headers, styles) with each sheet's parts
    spliced in after its header row, and its dimension set to the rows it now holds."""
    with zipfile.ZipFile(frame) as source, target.open("wb") as sink:
        writer = _ZipWriter(sink)
        for member in source.infolist():
            data = source.read(member)
            match = _SHEET_NAME.match(member.filename)
            if match is None or int(match[1]) > len(sheets):
                writer.add(member.filename, [deflate_bytes(data, final=True)])
                continue
            sheet = sheets[int(match[1]) - 1]
            head, tail = data.split(b"</sheetData>", 1)
            head = _DIMENSION.sub(rb'<dimension ref="A1:\g<1>%d"/>' % (sheet.rows + 1), head)
            pieces = [deflate_bytes(head, final=False), *sheet.parts]
            writer.add(
                member.filename, [*pieces, deflate_bytes(b"</sheetData>" + tail, final=True)]
            )
        writer.finish()
