"""Why an upload could not be read. Each class is one stable code that a page can translate.

ExporterError
└── UploadRejected              422  the upload cannot be read as a workbook
    ├── UnsupportedUpload       415  not csv, xlsx or xlsb (judged from the bytes)
    ├── CorruptUpload           422  a zip or XML that breaks off or does not parse
    ├── XmlDtdRefused           422  an XML part declares a DTD (entity expansion tricks)
    ├── MemberTooLarge          422  a zip member unpacks past the limit (zip bomb)
    ├── CompressionTooHigh      422  a zip member compresses more than any workbook does
    ├── TooManyParts            422  a zip's directory lists more parts than any workbook has
    ├── TooManyImportRows       422  more rows than one import may hold
    ├── TooManyColumns          422  a sheet wider than Excel's 16,384 columns
    └── CellTooLong             422  a cell longer than Excel's 32,767 characters
"""

from __future__ import annotations

from exporter.errors import ExporterError


class UploadRejected(ExporterError):
    """The upload cannot be read as a workbook; nothing of it is imported."""

    status = 422
    code = "upload_rejected"


class UnsupportedUpload(UploadRejected):
    """The bytes are not a csv, xlsx or xlsb file, whatever the file's name says."""

    status = 415
    code = "unsupported_file"


class CorruptUpload(UploadRejected):
    """The file starts as a workbook but breaks off or does not parse (params: reason)."""

    code = "corrupt_file"


class XmlDtdRefused(UploadRejected):
    """An XML part of the workbook declares a DTD; no workbook needs one (params: part)."""

    code = "xml_dtd_refused"


class MemberTooLarge(UploadRejected):
    """A zip member unpacks to more bytes than allowed (params: part, bytes, limit)."""

    code = "unpacked_too_large"


class CompressionTooHigh(UploadRejected):
    """A zip member is compressed more than any real workbook (params: part, ratio, limit)."""

    code = "compression_ratio_too_high"


class TooManyParts(UploadRejected):
    """The zip's directory is larger than any workbook's (params: bytes, limit)."""

    code = "too_many_parts"


class TooManyImportRows(UploadRejected):
    """The upload holds more rows than one import may (params: limit)."""

    code = "too_many_import_rows"


class TooManyColumns(UploadRejected):
    """A sheet is wider than the column limit (params: sheet, columns, limit)."""

    code = "too_many_columns"


class CellTooLong(UploadRejected):
    """A cell holds more characters than the limit (params: sheet, row, column, limit)."""

    code = "cell_too_long"
