"""File formats: the one list of them (FORMATS), each in a module of its own.

Adding a format is a module here with a FileFormat (see :mod:`.base`) and its entry below: the
API's validation and OpenAPI document, the pages and the database (``exporter migrate``) take
their list from FORMATS.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from exporter.exports.formats.base import FileFormat
from exporter.exports.formats.csv import CSV
from exporter.exports.formats.xlsx import XLSX

# In the order the API and the pages list them.
FORMATS: Mapping[str, FileFormat] = MappingProxyType({f.name: f for f in (XLSX, CSV)})
DEFAULT_FORMAT = XLSX.name
