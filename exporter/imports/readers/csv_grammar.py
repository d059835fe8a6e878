"""Whether a csv file is strict RFC 4180, which PostgreSQL's COPY reads as Excel does.

COPY and Excel (and Python's csv module) agree on every file whose quotes only open and close
whole fields, and disagree on others: COPY takes a quote in the middle of a cell as the start
of a quoted part (``5"7`` swallows the next rows into one cell), and a line holding only ``\\.``
as the end of the data (what follows is dropped without a word). Such a file is read here
instead.

The file is checked a piece at a time, cut after a line break with an even number of quotes
before it: in a strict file, that is where a record ends.
"""

from __future__ import annotations

import re
from pathlib import Path

FIELD = rb'(?:"(?:[^"]|"")*+"|[^",\r\n]*+)'
STRICT = re.compile(rb"(?:" + FIELD + rb"(?:,|\r\n|\n|\r))*+" + FIELD)
END_OF_DATA = re.compile(rb"(?:^|[\r\n])\\\.(?:\r|\n|$)")
# Small, so that checking holds little of the file at a time (a few pieces: carry, slice).
PIECE_BYTES = 1024 * 1024


def is_strict_csv(path: Path, skip: int = 0) -> bool:
    """Whether the file, past its first ``skip`` bytes (a BOM), is strict csv that COPY reads
    as Excel does; the encoding may be UTF-8 or GB18030, whose multi-byte characters hold no
    quote, comma or line break byte."""
    carry = b""
    with path.open("rb") as upload:
        upload.seek(skip)
        while chunk := upload.read(PIECE_BYTES):
            data = carry + chunk
            cut = _record_end(data)
            if cut is None:
                carry = data
                continue
            if not _strict(data[:cut]):
                return False
            carry = data[cut:]
    return _strict(carry)


def _record_end(data: bytes) -> int | None:
    """Where the last complete record of ``data`` ends: after a line break that an even number
    of quotes precede."""
    end = len(data)
    while (newline := data.rfind(b"\n", 0, end)) != -1:
        if data.count(b'"', 0, newline) % 2 == 0:
            return newline + 1
        end = newline
    return None


def _strict(piece: bytes) -> bool:
    if b"\\." in piece and END_OF_DATA.search(piece) is not None:
        return False
    return STRICT.fullmatch(piece) is not None
