"""The Content-Disposition of a download: an ASCII name for old clients, the real one in
RFC 6266's ``filename*``."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from exporter.api.task_actions import content_disposition

HEADER = re.compile(r'attachment; filename="([^"\\]*)"; filename\*=UTF-8\'\'([^;\s"]+)')


def names(header: str) -> tuple[str, str]:
    """The ASCII fallback, and the real name as a client decodes ``filename*``."""
    match = HEADER.fullmatch(header)
    assert match is not None, header
    return match[1], unquote(match[2], errors="strict")


def test_an_ascii_name_is_sent_as_it_is_in_both_parameters() -> None:
    header = content_disposition("role", "roles_20260131_080000_ab12cd.csv")

    assert header == (
        'attachment; filename="roles_20260131_080000_ab12cd.csv";'
        " filename*=UTF-8''roles_20260131_080000_ab12cd.csv"
    )


def test_a_chinese_name_falls_back_to_the_type_name_and_arrives_whole_in_utf8() -> None:
    header = content_disposition("account", "账号列表_20260131_080000_ab12cd.xlsx")

    assert names(header) == (
        "account_20260131_080000_ab12cd.xlsx",
        "账号列表_20260131_080000_ab12cd.xlsx",
    )
    assert "filename*=UTF-8''%E8%B4%A6%E5%8F%B7%E5%88%97%E8%A1%A8_" in header


@pytest.mark.parametrize(
    "file_name",
    ['say "hi".csv', "back\\slash.csv", "x;y=%20 z,w.csv", "名单 “A”.xlsx", "😀.csv"],
)
def test_no_name_can_break_out_of_its_parameter(file_name: str) -> None:
    header = content_disposition("role", file_name)

    fallback, real = names(header)
    assert real == file_name
    assert fallback.isascii()
    assert header.isascii()


def test_what_the_fallback_cannot_carry_is_dropped_and_the_type_name_leads() -> None:
    assert names(content_disposition("role", 'say "hi".csv'))[0] == "rolesay hi.csv"
    assert names(content_disposition("role", "名单 “A”.xlsx"))[0] == "role A.xlsx"
