"""Open an uploaded zip (xlsx, xlsb) only when none of its members is a bomb."""

from __future__ import annotations

import zipfile
from pathlib import Path

from exporter.imports.readers.base import ReadLimits
from exporter.imports.readers.errors import CompressionTooHigh, CorruptUpload, MemberTooLarge


def open_checked_zip(path: Path, limits: ReadLimits) -> zipfile.ZipFile:
    """The upload as an open zip whose members' declared sizes are within ``limits``.

    Checking the declared sizes is enough: zipfile never inflates a member past its declared
    size and fails on a CRC mismatch at its end, so a member that lies is cut off and refused.
    """
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
