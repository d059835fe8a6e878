"""The building blocks of handlers' filters: date ranges, their order, text patterns."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError, model_validator

from exporter.exports.filters import (
    DateOrDateTime,
    check_range_order,
    contains_pattern,
    out_of_order,
    range_end,
    range_start,
)

SHANGHAI = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("day", "end"),
    [
        (date(2026, 1, 31), "2026-02-01T00:00:00"),
        (date(2026, 12, 31), "2027-01-01T00:00:00"),
        (date(2028, 2, 28), "2028-02-29T00:00:00"),
        (date(2026, 2, 28), "2026-03-01T00:00:00"),
    ],
)
def test_a_date_ends_its_range_at_the_first_instant_of_the_next_day(day: date, end: str) -> None:
    assert range_end(day) == end


def test_a_date_time_ends_its_range_where_it_says_with_its_offset_if_it_has_one() -> None:
    assert range_end(datetime(2026, 1, 31, 8, 30)) == "2026-01-31T08:30:00"
    assert range_end(datetime(2026, 1, 31, 8, 30, tzinfo=SHANGHAI)) == ("2026-01-31T08:30:00+08:00")


def test_a_range_starts_at_the_date_or_date_time_as_given() -> None:
    assert range_start(date(2026, 1, 31)) == "2026-01-31"
    assert range_start(datetime(2026, 1, 31, 8, 0, 1, tzinfo=UTC)) == "2026-01-31T08:00:01+00:00"


@pytest.mark.parametrize(
    ("start", "end", "reversed_"),
    [
        (date(2026, 2, 1), date(2026, 1, 31), True),
        (date(2026, 1, 31), date(2026, 1, 31), False),
        (datetime(2026, 1, 31, 9), datetime(2026, 1, 31, 8), True),
        # 09:00 in Shanghai is 01:00 UTC.
        (datetime(2026, 1, 31, 9, tzinfo=SHANGHAI), datetime(2026, 1, 31, 0, 30, tzinfo=UTC), True),
        (datetime(2026, 1, 31, 9, tzinfo=SHANGHAI), datetime(2026, 1, 31, 2, tzinfo=UTC), False),
        # A date and a date-time, or a zone-less and a zoned time, are compared by PostgreSQL in
        # the export's zone; here they are never judged reversed.
        (date(2026, 2, 1), datetime(2026, 1, 31), False),
        (datetime(2026, 2, 1), datetime(2026, 1, 31, tzinfo=UTC), False),
        (None, date(2026, 1, 31), False),
        (date(2026, 1, 31), None, False),
    ],
)
def test_a_range_is_out_of_order_only_when_its_ends_compare(
    start: date | None, end: date | None, reversed_: bool
) -> None:
    assert out_of_order(start, end) is reversed_


class Period(BaseModel):
    start: DateOrDateTime | None = None
    end: DateOrDateTime | None = None

    @model_validator(mode="after")
    def _in_order(self) -> Period:
        check_range_order(self, "start", "end")
        return self


def test_a_reversed_range_is_refused_on_its_start_field_naming_the_end_field() -> None:
    with pytest.raises(ValidationError) as refused:
        Period(start="2026-02-01", end="2026-01-31")

    [error] = refused.value.errors()
    assert (error["type"], error["loc"], error["ctx"]) == (
        "date_range_reversed",
        ("start",),
        {"end_field": "end"},
    )
    assert error["msg"] == "must not be after end"
    assert Period(start="2026-01-31", end="2026-01-31").end == date(2026, 1, 31)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-01-31", date(2026, 1, 31)),
        (" 2026-01-31 ", date(2026, 1, 31)),
        ("2026-01-31T00:00:00", datetime(2026, 1, 31)),
        ("2026-01-31 08:15", datetime(2026, 1, 31, 8, 15)),
        ("2026-01-31T08:15:00+08:00", datetime(2026, 1, 31, 8, 15, tzinfo=SHANGHAI)),
    ],
)
def test_a_day_and_an_instant_are_told_apart(text: str, value: date) -> None:
    parsed = TypeAdapter(DateOrDateTime).validate_python(text)

    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("value", "error_type"),
    [("31/01/2026", "date_format"), ("2026-02-30", "date_format"), (1_769_817_600, "value_error")],
)
def test_anything_but_an_iso_date_or_date_time_is_refused_with_one_error(
    value: object, error_type: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        TypeAdapter(DateOrDateTime).validate_python(value)

    [error] = refused.value.errors()
    assert error["type"] == error_type
    assert "ISO 8601 date" in error["msg"]


def test_a_contains_pattern_takes_the_wildcards_and_the_escape_literally() -> None:
    assert contains_pattern("张三") == "%张三%"
    assert contains_pattern("50%_off\\x") == "%50\\%\\_off\\\\x%"
