"""The storage a deployment's settings choose: the one place an API or a worker opens it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from exporter.storage.base import Storage
from exporter.storage.local import LocalStorage
from exporter.storage.s3 import S3Storage
from exporter.storage.s3_upload import PARTS_IN_FLIGHT
from settings import Settings

# Our own retries (exporter.storage.s3_calls) are the one policy; botocore's would multiply
# them. The MD5 sent with each part is the checksum: botocore's own CRC32 would cost a second
# pass over every byte.
S3_CLIENT_CONFIG = AioConfig(
    retries={"total_max_attempts": 1},
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    # The parts in flight, and the downloads an API process serves at once.
    max_pool_connections=PARTS_IN_FLIGHT + 30,
    connect_timeout=10,
    read_timeout=60,
    # Each part carries its MD5, which the store checks: hashing it again with SHA-256 for
    # SigV4 (botocore's default over http) cost 0.07-0.1 s of CPU per 100 MB, measured.
    s3={"addressing_style": "path", "payload_signing_enabled": False},
    # Presigned URLs too: SigV2 (botocore's default for them) is refused by newer regions.
    signature_version="s3v4",
)


@asynccontextmanager
async def open_storage(settings: Settings, deployment: uuid.UUID) -> AsyncIterator[Storage]:
    """Where the finished files of ``deployment`` live: the directory of a ``file://`` storage
    URL, or the bucket of an ``s3://`` one (its client closed when the block ends)."""
    location = settings.s3_location
    if location is None:
        assert settings.storage_dir is not None  # the URL is file:// (settings checked it)
        yield LocalStorage(settings.storage_dir, deployment)
        return
    secret = settings.aws_secret_access_key
    async with get_session().create_client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=None if secret is None else secret.get_secret_value(),
        config=S3_CLIENT_CONFIG,
    ) as client:
        yield S3Storage(
            client,
            location.bucket,
            location.prefix,
            deployment,
            redirect=settings.download_redirect,
        )
