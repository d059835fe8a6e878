"""What a storage URL names (a directory, or a bucket and a prefix), and which bytes a download's
``Range`` asks of an object."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from exporter.storage.ranged_response import byte_range
from settings import DEFAULT_WORK_DIR, S3Location, Settings

SECRET = "x" * 32


def test_a_file_url_names_the_storage_directory_and_its_work_directory() -> None:
    settings = Settings(secret=SECRET, storage_url="file:///srv/exports")

    assert (settings.storage_dir, settings.s3_location) == (Path("/srv/exports"), None)
    assert settings.scratch_dir == Path("/srv/exports/.work")


def test_an_s3_url_names_a_bucket_and_a_prefix_and_work_stays_local() -> None:
    settings = Settings(secret=SECRET, storage_url="s3://exports-bucket/team/a/")

    assert settings.storage_dir is None
    assert settings.s3_location == S3Location("exports-bucket", "team/a")
    assert settings.scratch_dir == DEFAULT_WORK_DIR
    assert Settings(secret=SECRET, storage_url="s3://exports-bucket").s3_location == S3Location(
        "exports-bucket", ""
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, (0, 100)),
        ("bytes=0-9", (0, 10)),
        ("bytes=90-", (90, 100)),
        ("bytes=-5", (95, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=50-500", (50, 100)),
        ("bytes=100-", None),
        ("bytes=-0", None),
        ("Bytes = 0-9", (0, 10)),
        # Ignored, as RFC 9110 allows: the whole object.
        ("bytes=5-1", (0, 100)),
        ("bytes=0-1,3-4", (0, 100)),
        ("lines=1-2", (0, 100)),
        ("items=0-1", (0, 100)),
        ("bytes=-", (0, 100)),
        ("bytes=a-b", (0, 100)),
        ("bytes=0x1-2", (0, 100)),
        ("bytes=\u0661-2", (0, 100)),
        ("bytes", (0, 100)),
        ("", (0, 100)),
    ],
)
def test_a_range_asks_for_the_bytes_it_names_within_the_object(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    request = make_mocked_request("GET", "/", headers={} if header is None else {"Range": header})

    assert byte_range(request, 100) == expected


ETAG = '"0123abcd"'
MODIFIED = "Mon, 30 Nov 2026 10:00:00 GMT"


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (ETAG, (0, 10)),
        (MODIFIED, (0, 10)),
        ('"another"', (0, 100)),
        (f"W/{ETAG}", (0, 100)),  # a weak tag never matches: the bytes may differ
        ("Tue, 01 Dec 2026 10:00:00 GMT", (0, 100)),
    ],
)
def test_a_range_holds_only_while_if_range_names_the_object_as_it_is(
    if_range: str, expected: tuple[int, int]
) -> None:
    headers = {"Range": "bytes=0-9", "If-Range": if_range}
    request = make_mocked_request("GET", "/", headers=headers)

    assert byte_range(request, 100, etag=ETAG, last_modified=MODIFIED) == expected
