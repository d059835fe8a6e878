"""Open an uploaded zip (xlsx, xlsb) only when none of its members is a bomb."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from exporter.imports.readers.base import ReadLimits
from exporter.imports.readers.errors import (
    CompressionTooHigh,
    CorruptUpload,
    MemberTooLarge,
    TooManyParts,
)

# The records at a zip's end that give its directory's size (APPNOTE 4.3.14 to 4.3.16).
END_RECORD = b"PK\x05\x06"
END_RECORD_BYTES = 22
MAX_COMMENT_BYTES = 0xFFFF
ZIP64_LOCATOR = b"PK\x06\x07"
ZIP64_LOCATOR_BYTES = 20
ZIP64_END_RECORD_BYTES = 56


def open_checked_zip(path: Path, limits: ReadLimits) -> zipfile.ZipFile:
    """The upload as an open zip whose directory and members' declared sizes are within
    ``limits``.

    Checking the declared sizes is enough: zipfile never inflates a member past its declared
    size and fails on a CRC mismatch at its end, so a member that lies is cut off and refused.
    """
    directory = directory_bytes(path)
    if directory is not None and directory > limits.max_directory_bytes:
        raise TooManyParts(
            f"The zip's directory is {directory} bytes; a workbook's takes at most "
            f"{limits.max_directory_bytes}",
            params={"bytes": directory, "limit": limits.max_directory_bytes},
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise corrupt(exc) from exc
    try:
        for member in archive.infolist():
            check_member(member, limits)
    except BaseException:
        archive.close()
        raise
    return archive


def directory_bytes(path: Path) -> int | None:
    """The size that the zip's end record gives its directory, found as zipfile finds it (the
    last end record in the file's last 64 KiB, and a zip64 one just before it); None when
    there is none (zipfile then refuses the file)."""
    with path.open("rb") as upload:
        size = upload.seek(0, os.SEEK_END)
        tail_bytes = END_RECORD_BYTES + MAX_COMMENT_BYTES + ZIP64_LOCATOR_BYTES
        upload.seek(max(size - tail_bytes - ZIP64_END_RECORD_BYTES, 0))
        tail = upload.read()
    at = tail.rfind(END_RECORD)
    if at < 0 or len(tail) - at < END_RECORD_BYTES:
        return None
    locator = at - ZIP64_LOCATOR_BYTES
    if locator >= ZIP64_END_RECORD_BYTES and tail[locator : locator + 4] == ZIP64_LOCATOR:
        return int.from_bytes(tail[locator - 16 : locator - 8], "little")
    return int.from_bytes(tail[at + 12 : at + 16], "little")


def check_member(member: zipfile.ZipInfo, limits: ReadLimits) -> None:
    """Raise when one member unpacks too large or is compressed past any real workbook."""
    if member.file_size > limits.max_unpacked_bytes:
        raise MemberTooLarge(
            f"{member.filename} unpacks to {member.file_size} bytes; "
            f"at most {limits.max_unpacked_bytes} are read",
            params={
                "part": member.filename,
                "bytes": member.file_size,
                "limit": limits.max_unpacked_bytes,
            },
        )
    if member.file_size < limits.ratio_floor_bytes:
        return
    ratio = member.file_size / max(member.compress_size, 1)
    if ratio > limits.max_compression_ratio:
        raise CompressionTooHigh(
            f"{member.filename} is compressed {ratio:.0f} to 1; "
            f"no workbook goes past {limits.max_compression_ratio:.0f} to 1",
            params={
                "part": member.filename,
                "ratio": round(ratio),
                "limit": limits.max_compression_ratio,
            },
        )


def corrupt(exc: BaseException) -> CorruptUpload:
    """The error for a workbook that breaks off or does not parse."""
    return CorruptUpload(
        f"The file is damaged or incomplete: {exc}", params={"reason": str(exc)[:200]}
    )
