"""The shared string table on disk gives back every string as appended, in any order."""

from __future__ import annotations

import random

from exporter.imports.readers.string_table import RELEASE_EVERY, StringTable


def test_strings_come_back_as_appended_in_any_order_and_after_pages_are_released() -> None:
    texts = [
        "",
        "正常",
        "a" * 40_000,
        "emoji 😀",
        "\ud800 lone",
        *(f"user{n}" for n in range(5000)),
    ]
    table = StringTable()
    for text in texts:
        table.append(text)
    table.seal()
    try:
        order = list(range(len(texts))) * 3
        random.Random(7).shuffle(order)
        assert len(order) > RELEASE_EVERY
        assert all(table[index] == texts[index] for index in order)
        assert len(table) == len(texts)
    finally:
        table.close()


def test_an_empty_table_has_no_strings() -> None:
    table = StringTable().seal()
    assert len(table) == 0
    table.close()
