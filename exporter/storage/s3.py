"""Finished files as objects of an S3 bucket (AWS, or a compatible store such as SeaweedFS).

A task row's key is the same as with a local directory, ``<deployment id>/<name>``; the object's
key is that under the storage URL's prefix (``s3://bucket/<prefix>/<deployment id>/<name>``).
A storage lists, serves and removes only under its own deployment's prefix, so deployments
sharing a bucket never touch each other's objects.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiofiles
from aiohttp import ClientPayloadError, hdrs
from botocore.exceptions import ClientError, IncompleteReadError

from exporter.storage.base import StoredFile, StoredObject, UnfinishedUpload
from exporter.storage.s3_calls import is_missing, retried
from exporter.storage.s3_response import CHUNK_BYTES, ObjectResponse
from exporter.storage.s3_upload import ObjectUpload, part_slots

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import HeadObjectOutputTypeDef


def _http_date(moment: datetime) -> str:
    # botocore's datetimes are in its own UTC zone, which format_datetime does not take for UTC.
    return format_datetime(moment.astimezone(UTC), usegmt=True)


class S3Storage:
    """The ``Storage`` of one deployment in ``bucket``, under ``prefix`` (may be empty)."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        deployment: uuid.UUID,
        *,
        redirect: bool = False,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._deployment = str(deployment)
        self._base = f"{prefix}/" if prefix else ""
        self._root = f"{self._base}{self._deployment}/"
        self._redirect = redirect
        self._part_slots = part_slots()

    def _object_key(self, key: str) -> str | None:
        """The object of a task row's key, if the key names one of this deployment's files."""
        deployment, _, name = key.partition("/")
        if deployment != self._deployment or not name or "/" in name:
            return None
        return self._base + key

    async def publish(self, source: Path, name: str) -> StoredFile:
        written = asyncio.get_running_loop().create_future()
        written.set_result(None)
        return await self.publish_growing(source, name, written)

    async def publish_growing(
        self, source: Path, name: str, written: asyncio.Future[None]
    ) -> StoredFile:
        key = f"{self._deployment}/{name}"
        upload = ObjectUpload(self._client, self._bucket, self._base + key, self._part_slots)
        size = await upload.from_file(source, written)
        source.unlink()
        return StoredFile(key, size)

    async def _head(self, object_key: str) -> HeadObjectOutputTypeDef | None:
        try:
            return await retried(
                f"find {object_key}",
                lambda: self._client.head_object(Bucket=self._bucket, Key=object_key),
            )
        except OSError as exc:
            if isinstance(exc.__cause__, ClientError) and is_missing(exc.__cause__):
                return None
            raise

    async def download(
        self, key: str, *, content_type: str, content_disposition: str
    ) -> ObjectResponse | None:
        object_key = self._object_key(key)
        head = None if object_key is None else await self._head(object_key)
        if object_key is None or head is None:
            return None
        headers: dict[str, str] = {
            hdrs.CONTENT_TYPE: content_type,
            hdrs.CONTENT_DISPOSITION: content_disposition,
            hdrs.ETAG: head["ETag"],
            hdrs.LAST_MODIFIED: _http_date(head["LastModified"]),
        }
        return ObjectResponse(
            self._client,
            self._bucket,
            object_key,
            head["ContentLength"],
            headers=headers,
            redirect=self._redirect,
        )

    async def retrieve(self, key: str, target: Path) -> bool:
        object_key = self._object_key(key)
        if object_key is None:
            return False

        async def copy() -> None:
            got = await self._client.get_object(Bucket=self._bucket, Key=object_key)
            body = got["Body"]
            try:
                async with aiofiles.open(target, "wb") as file:
                    async for chunk in body.iter_chunks(CHUNK_BYTES):
                        await file.write(chunk)
            except (ClientPayloadError, IncompleteReadError, asyncio.IncompleteReadError) as exc:
                # A ConnectionError: tried again from the start, then an OSError that says so.
                raise ConnectionError(f"the download was cut off ({exc})") from exc
            finally:
                body.close()

        try:
            await retried(f"read {object_key}", copy)
        except OSError as exc:
            if isinstance(exc.__cause__, ClientError) and is_missing(exc.__cause__):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        if object_key is not None:
            await retried(
                f"remove {object_key}",
                lambda: self._client.delete_object(Bucket=self._bucket, Key=object_key),
            )

    async def owned(self) -> list[StoredObject]:
        found = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._root
        )
        async for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].removeprefix(self._root)
                if "/" not in name:
                    key = f"{self._deployment}/{name}"
                    found.append(StoredObject(key, item["Size"], item["LastModified"]))
        return found

    async def unfinished(self) -> list[UnfinishedUpload]:
        found = []
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self._bucket, Prefix=self._root
        )
        async for page in pages:
            for upload in page.get("Uploads", []):
                key = upload["Key"].removeprefix(self._base)
                found.append(UnfinishedUpload(key, upload["Initiated"], upload["UploadId"]))
        return found

    async def abort(self, upload: UnfinishedUpload) -> None:
        object_key = self._object_key(upload.key)
        if object_key is None:
            return
        try:
            await retried(
                f"abort the upload of {object_key}",
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=object_key, UploadId=upload.handle
                ),
            )
        except OSError as exc:
            # Aborted meanwhile, by the upload's own worker or another janitor.
            if not (isinstance(exc.__cause__, ClientError) and "NoSuchUpload" in str(exc)):
                raise
