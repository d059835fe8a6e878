"""A real S3 server for the tests: SeaweedFS (started once per session by tests/conftest.py), and
what a test asks the bucket directly: which objects and which unfinished uploads are there."""

from __future__ import annotations

from exporter.ops.seaweedfs import SeaweedFS, s3_client

# One bucket for the session; each test has a prefix of its own in it.
TEST_BUCKET = "exporter-tests"
ACCESS_KEY = "exporter-test-key"
SECRET_KEY = "exporter-test-secret-" + "s" * 20


async def object_keys(server: SeaweedFS, bucket: str, prefix: str) -> list[str]:
    """Every object under ``prefix``, sorted."""
    keys: list[str] = []
    async with s3_client(server) as client:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        async for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []) if "Key" in item)
    return sorted(keys)


async def unfinished_uploads(server: SeaweedFS, bucket: str, prefix: str) -> list[str]:
    """The keys of multipart uploads begun under ``prefix`` and neither completed nor aborted."""
    async with s3_client(server) as client:
        listing = await client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return sorted(upload["Key"] for upload in listing.get("Uploads", []) if "Key" in upload)
