"""Which kind of file an upload is, judged from its bytes and never from its name."""

from __future__ import annotations

import codecs
import enum
import zipfile
from pathlib import Path

from exporter.imports.readers.errors import UnsupportedUpload

ZIP_MAGIC = b"PK\x03\x04"
SNIFF_CHUNK_BYTES = 1024 * 1024


class UploadFormat(enum.StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    XLSB = "xlsb"


def detect_format(path: Path, archive: zipfile.ZipFile | None = None) -> UploadFormat:
    """The upload's format: a zip holding xl/workbook.xml is xlsx, one holding xl/workbook.bin
    is xlsb, text is csv; anything else is refused with ``UnsupportedUpload``.

    ``archive`` is the upload opened as a zip when it starts like one (the caller checks it
    for bombs first).
    """
    if archive is not None:
        names = set(archive.namelist())
        if "xl/workbook.xml" in names:
            return UploadFormat.XLSX
        if "xl/workbook.bin" in names:
            return UploadFormat.XLSB
        raise unsupported("a zip file that is not an Excel workbook")
    require_csv_encoding(path)
    return UploadFormat.CSV


def starts_as_zip(path: Path) -> bool:
    """Whether the upload begins with a zip's local file header."""
    with path.open("rb") as upload:
        return upload.read(len(ZIP_MAGIC)) == ZIP_MAGIC


def require_csv_encoding(path: Path) -> str:
    """The encoding of an upload that is text, else ``UnsupportedUpload``."""
    encoding = csv_encoding(path)
    if encoding is None:
        raise unsupported("neither a workbook nor text")
    return encoding


def csv_encoding(path: Path) -> str | None:
    """The encoding that the whole file decodes in (utf-8-sig, else gb18030: what Excel on a
    Chinese Windows saves), or None when it is not text: no encoding fits or it holds NUL."""
    for encoding in ("utf-8-sig", "gb18030"):
        if decodes_as_text(path, encoding):
            return encoding
    return None


def decodes_as_text(path: Path, encoding: str) -> bool:
    """Whether the file decodes in ``encoding`` without a NUL, read a chunk at a time."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as upload:
        try:
            while chunk := upload.read(SNIFF_CHUNK_BYTES):
                if "\x00" in decoder.decode(chunk):
                    return False
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def unsupported(what: str) -> UnsupportedUpload:
    """The error for an upload that is not csv, xlsx or xlsb."""
    return UnsupportedUpload(
        f"The file is {what}; upload a csv, xlsx or xlsb file", params={"found": what}
    )
