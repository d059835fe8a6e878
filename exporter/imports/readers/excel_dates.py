"""Excel's dates: serial day numbers shown as dates by their cell's number format."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping

EPOCH_1900 = datetime.datetime(1899, 12, 30)
EPOCH_1904 = datetime.datetime(1904, 1, 1)
# Built-in number formats that show a date or time (ECMA-376 18.8.30, with the ids that the
# Chinese, Japanese and Korean editions of Excel give their own date formats).
BUILTIN_DATE_FORMATS = frozenset([*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)])
# What a format code shows literally: quoted text, escaped characters, [Red]/[$-804] sections;
# their letters are not date parts. [h], [m] and [s] (elapsed time) are kept.
LITERAL_PARTS = re.compile(r'"[^"]*"|\\.|_.|\*.|\[(?![hms]+\])[^\]]*\]')
DATE_PARTS = re.compile(r"[dmyhs]", re.IGNORECASE)


def is_date_format(format_id: int, format_code: str | None) -> bool:
    """Whether a number format shows its number as a date or time."""
    if format_code is None:
        return format_id in BUILTIN_DATE_FORMATS
    shown = LITERAL_PARTS.sub("", format_code.split(";")[0])
    return DATE_PARTS.search(shown) is not None


def date_styles(format_ids: Iterable[int], codes: Mapping[int, str]) -> frozenset[int]:
    """The indexes of the cell styles, given each one's number format id, that show a date;
    ``codes`` holds the workbook's own format codes by id."""
    return frozenset(
        index
        for index, format_id in enumerate(format_ids)
        if is_date_format(format_id, codes.get(format_id))
    )


def serial_to_datetime(serial: float, date1904: bool) -> datetime.datetime | float:
    """The date and time a serial number stands for, to Excel's millisecond; the number itself
    when it is no date Excel can show (negative, past 9999, or 1900's phantom 29 February)."""
    if date1904:
        epoch = EPOCH_1904
    elif serial < 60:
        # Excel counts a 29 February 1900 that never was: serials before it are one day off.
        epoch = EPOCH_1900 + datetime.timedelta(days=1)
    elif serial < 61:
        return serial
    else:
        epoch = EPOCH_1900
    if not 0 <= serial < 2_958_466:
        return serial
    return epoch + datetime.timedelta(milliseconds=round(serial * 86_400_000))
