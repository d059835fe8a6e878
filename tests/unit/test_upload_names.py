"""The name an uploaded file is shown by: what the client sent, without a path or escapes."""

from __future__ import annotations

import pytest

from exporter.api.uploads import MAX_FILE_NAME, file_name


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("账号.csv", "账号.csv"),
        ("C:\\fakepath\\账号.xlsx", "账号.xlsx"),
        ("/home/me/roles.csv", "roles.csv"),
        ("%E8%B4%A6%E5%8F%B7.csv", "账号.csv"),  # aiohttp's client escapes every non-ASCII byte
        ("say %22hi%22.csv", 'say "hi".csv'),  # browsers escape quotes and line breaks
        ("line%0Abreak.csv", "linebreak.csv"),
        ("", "file"),
        (None, "file"),
        ("C:\\", "file"),
    ],
)
def test_an_uploaded_file_is_shown_by_the_last_part_of_its_name(
    sent: str | None, shown: str
) -> None:
    assert file_name(sent, default="file") == shown


def test_a_long_name_is_cut_to_what_file_systems_take() -> None:
    assert len(file_name("x" * 1000 + ".csv", default="file")) == MAX_FILE_NAME
