"""CSV files: UTF-8 with a BOM so Excel reads Chinese text, RFC 4180 quoting, one header row.

The rows come from PostgreSQL's ``COPY … TO STDOUT (FORMAT csv)`` already shaped and quoted;
this module writes what precedes them and counts them as they stream through.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from exporter.exports.columns import Column

UTF8_BOM = b"\xef\xbb\xbf"


def csv_preamble(columns: Sequence[Column]) -> bytes:
    """The BOM and the header row, quoted the way COPY quotes the data rows."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([column.label for column in columns])
    return UTF8_BOM + header.getvalue().encode("utf-8")
