"""The base of every model of client input: each value in it can be bound in PostgreSQL.

A value pydantic accepts can still fail later, in the database or in the worker: text with NUL
(text and jsonb refuse it) or a lone surrogate (not UTF-8), an integer beyond bigint, a date
whose next day Python cannot hold (``range_end`` of 9999-12-31), a UTC offset past PostgreSQL's
15:59:59, an infinite float. Models derived from :class:`InputModel` refuse these when they are
validated, naming the field, whatever the field's declared type: a handler's params get this
from ExportParams without declaring anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, field_validator
from pydantic_core import PydanticCustomError

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
# A day inside Python's date range at each end: a date's whole day ends the next midnight, and a
# date-time with an offset (at most a day) still has a UTC instant Python can hold.
EARLIEST_DATE = date(1, 1, 2)
LATEST_DATE = date(9999, 12, 30)
# PostgreSQL refuses larger offsets ("time zone displacement out of range"); Python takes 23:59.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59, seconds=59)


def unbindable(value: Any) -> PydanticCustomError | None:
    """Why PostgreSQL could not take ``value`` (or anything inside it), or None if it can."""
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if BIGINT_MIN <= value <= BIGINT_MAX:
            return None
        # As text: a page's JavaScript cannot hold these numbers exactly.
        return PydanticCustomError(
            "number_out_of_range",
            "must be between {min} and {max}",
            {"min": str(BIGINT_MIN), "max": str(BIGINT_MAX)},
        )
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return PydanticCustomError("number_not_finite", "must be a finite number")
    if isinstance(value, date):
        return _date_problem(value)
    if isinstance(value, Mapping):
        return _first_problem([*value.keys(), *value.values()])
    if isinstance(value, list | tuple | set | frozenset):
        return _first_problem(value)
    return None


def _first_problem(values: Any) -> PydanticCustomError | None:
    return next(filter(None, map(unbindable, values)), None)


def _date_problem(value: date) -> PydanticCustomError | None:
    day = value
    if isinstance(value, datetime):
        day = value.date()
        if abs(value.utcoffset() or timedelta()) > MAX_UTC_OFFSET:
            return PydanticCustomError(
                "utc_offset_out_of_range",
                "must have a UTC offset between {min} and {max}",
                {"min": "-15:59:59", "max": "+15:59:59"},
            )
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        return PydanticCustomError(
            "date_out_of_range",
            "must be between {min} and {max}",
            {"min": EARLIEST_DATE.isoformat(), "max": LATEST_DATE.isoformat()},
        )
    return None


def _text_problem(text: str) -> PydanticCustomError | None:
    if "\x00" in text:
        return PydanticCustomError("text_has_nul", "must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return PydanticCustomError("text_not_unicode", "must be valid Unicode text")
    return None


def fits_bigint(digits: str) -> bool:
    """Whether ``digits`` is an id PostgreSQL can hold: ASCII digits within bigint.

    ``str.isdigit`` alone also accepts "²" and "١٢", and ``int`` refuses past 4,300 digits.
    """
    return (
        0 < len(digits) <= len(str(BIGINT_MAX))
        and digits.isascii()
        and digits.isdigit()
        and int(digits) <= BIGINT_MAX
    )


class InputModel(BaseModel):
    """A model of client input; see the module docstring for what it refuses."""

    @field_validator("*", mode="after")
    @classmethod
    def _bindable(cls, value: Any) -> Any:
        if (problem := unbindable(value)) is not None:
            raise problem
        return value
