"""Building blocks for handlers' filters."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def _date_or_datetime(value: Any) -> Any:
    # "2026-01-31" is a day, "2026-01-31T00:00:00" an instant; pydantic's union cannot tell,
    # and would report one error per member of the union.
    if isinstance(value, date):  # a datetime is a date too
        return value
    if not isinstance(value, str):
        # Not a number of seconds since 1970, which pydantic alone would take.
        raise ValueError("must be an ISO 8601 date (2026-01-31) or date-time")
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise PydanticCustomError(
            "date_format",
            "must be an ISO 8601 date ({example}) or date-time",
            {"example": "2026-01-31"},
        ) from None


DateOrDateTime = Annotated[datetime | date, BeforeValidator(_date_or_datetime)]
"""An ISO 8601 date (a whole day) or date-time (without an offset: in the export's zone)."""


def contains_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, with ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def range_start(value: datetime | date) -> str:
    """A lower bound for a timestamptz column; offset-less values are in the session time zone."""
    return value.isoformat()


def range_end(value: datetime | date) -> str:
    """An exclusive upper bound: a date means the whole of that day."""
    if isinstance(value, datetime):
        return value.isoformat()
    return datetime.combine(value + timedelta(days=1), time()).isoformat()


def out_of_order(start: datetime | date | None, end: datetime | date | None) -> bool:
    """Whether a range's start lies after its end, where the two can be compared."""
    if start is None or end is None or type(start) is not type(end):
        return False
    if isinstance(start, datetime) and isinstance(end, datetime):
        if (start.tzinfo is None) != (end.tzinfo is None):
            return False
    return start > end


def check_range_order(params: BaseModel, start_field: str, end_field: str) -> None:
    """For a model validator: refuse a range whose start lies after its end, on the start field.

    A model validator's own error has no field; this one names ``start_field``, with the code
    ``date_range_reversed`` and ``end_field`` in its params, so a page can put it by the input.
    """
    start = getattr(params, start_field)
    if out_of_order(start, getattr(params, end_field)):
        problem = PydanticCustomError(
            "date_range_reversed", "must not be after {end_field}", {"end_field": end_field}
        )
        raise ValidationError.from_exception_data(
            type(params).__name__,
            [InitErrorDetails(type=problem, loc=(start_field,), input=start)],
        )
