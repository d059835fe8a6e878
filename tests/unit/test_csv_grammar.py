"""Which csv files PostgreSQL's COPY reads as Excel does, and which are read here instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.imports.readers import csv_grammar
from exporter.imports.readers.csv_grammar import is_strict_csv


@pytest.mark.parametrize(
    "content",
    [
        b"a,b\r\n1,2\r\n",
        b'a,b\r\n"x, ""quoted"" y",2\r\n"two\nlines",3',
        b"a,b\n,\n\n",
        '名,值\r\n张三,"引号""内"\r\n'.encode("gb18030"),
        b"",
    ],
)
def test_files_whose_quotes_open_and_close_fields_are_strict(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "ok.csv"
    path.write_bytes(content)
    assert is_strict_csv(path)


@pytest.mark.parametrize(
    "content",
    [
        b'a,b\r\nquote_a,5"7\r\nquote_b,x"y\r\n',  # a quote inside a cell
        b'a,b\r\n"x"y,2\r\n',  # text after a closing quote
        b"a,b\r\nmark,a\r\n\\.\r\nlater,b\r\n",  # COPY's end-of-data line
        b'a,b\r\n"never closed,2\r\n',
    ],
)
def test_files_copy_would_read_otherwise_are_not(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    assert not is_strict_csv(path)


def test_a_file_checked_in_pieces_gives_the_same_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_grammar, "PIECE_BYTES", 16)
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    rows = b"".join(b'%d,"line\nbreak ""%d""",x\r\n' % (n, n) for n in range(200))
    good.write_bytes(b"\xef\xbb\xbfa,b,c\r\n" + rows)
    bad.write_bytes(b"a,b,c\r\n" + rows + b'9,5"7,x\r\n' + rows)
    assert is_strict_csv(good, skip=3)
    assert not is_strict_csv(bad)
