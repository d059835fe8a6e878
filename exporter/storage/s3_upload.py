"""One local file into one S3 object, streamed: parts go up while the file still grows, a few
at a time, each with its MD5 for the store to check; whole or not at all.

Memory is bounded per process, whatever the files' sizes and however many are uploaded at once:
the parts in flight share ``PartSlots`` (``PARTS_IN_FLIGHT``), and each upload holds at most one
part more, read and waiting for a slot. A file shorter than one part goes up in one request.
The object is checked once complete (its size, and its ETag against the parts' MD5s); any
failure or cancellation aborts the multipart upload, so the store keeps neither an object nor
an unfinished upload.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from exporter.storage.s3_calls import retried

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger("exporter.storage")

# S3's smallest part. A part in flight costs the worker ~3 times its size (ours, botocore's
# copy, the socket's buffer): a 113 MB upload took a process from 72 MB to 142-151 MB with
# 3 parts of 8 MiB in flight, to 121 MB with 2 of 5 MiB, in about the same time (0.9-1.0 s
# against 1.0 s, SeaweedFS on loopback).
PART_BYTES = 5 * 1024**2
PARTS_IN_FLIGHT = 2


def part_slots() -> asyncio.Semaphore:
    """The slots of one process's parts in flight, shared by all its uploads."""
    return asyncio.Semaphore(PARTS_IN_FLIGHT)


# How often a growing file is looked at: a part's worth of csv is written in ~0.1 s.
GROWTH_POLL_S = 0.02


@dataclass(frozen=True)
class _Part:
    number: int
    etag: str
    md5: bytes


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _content_md5(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _unquoted(etag: str) -> str:
    return etag.strip('"')


def _growth(file: BinaryIO) -> int:
    return os.fstat(file.fileno()).st_size - file.tell()


class ObjectUpload:
    """The upload of one object ``key`` of ``bucket``, its parts sent in ``slots``."""

    def __init__(self, client: S3Client, bucket: str, key: str, slots: asyncio.Semaphore) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._upload_id: str | None = None
        self._started = 0
        self._size = 0
        self._parts: list[_Part] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._slots = slots

    async def from_file(self, source: Path, written: asyncio.Future[None]) -> int:
        """Send ``source`` as it grows, until ``written`` is done; the object's size in bytes.
        ``written``'s error (or a cancellation) aborts the upload and is raised."""
        try:
            with source.open("rb") as file:
                await self._send_while_growing(file, written)
                finished = time.monotonic()
                rest = await asyncio.to_thread(file.read)
            if self._upload_id is None:
                await self._put_whole(rest)
            else:
                if rest:
                    await self._start_part(rest)
                await self._complete()
        except BaseException:
            await asyncio.shield(self._abort())
            raise
        # What a csv export waits for after its last row: the tail of its upload.
        log.info(
            "stored %s: %d bytes in %d part(s), %.2f s after it was written",
            self._key,
            self._size,
            max(self._started, 1),
            time.monotonic() - finished,
        )
        return self._size

    async def _send_while_growing(self, file: BinaryIO, written: asyncio.Future[None]) -> None:
        while True:
            self._raise_failed_part()
            # Seen before the file's size: once the writer is done, the size is final.
            finished = written.done()
            if finished:
                written.result()
            if _growth(file) >= PART_BYTES:
                await self._start_part(await asyncio.to_thread(file.read, PART_BYTES))
            elif finished:
                return
            else:
                await asyncio.wait({written}, timeout=GROWTH_POLL_S)

    async def _start_part(self, data: bytes) -> None:
        """Send ``data`` as the next part in the background, once one of the slots is free
        (so at most one part more than those in flight is held)."""
        if self._upload_id is None:
            created = await retried(
                f"begin the upload of {self._key}",
                lambda: self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key),
            )
            self._upload_id = created["UploadId"]
        await self._slots.acquire()
        self._started += 1
        self._size += len(data)
        sending = asyncio.create_task(self._send_part(self._upload_id, self._started, data))
        sending.add_done_callback(lambda _: self._slots.release())
        self._sending.add(sending)

    def _raise_failed_part(self) -> None:
        for sending in self._sending:
            if sending.done() and not sending.cancelled() and sending.exception() is not None:
                sending.result()

    async def _send_part(self, upload_id: str, number: int, data: bytes) -> None:
        digest = await asyncio.to_thread(_md5, data)
        sent = await retried(
            f"store part {number} of {self._key}",
            lambda: self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=_content_md5(digest),
            ),
        )
        self._parts.append(_Part(number, sent["ETag"], digest))

    async def _put_whole(self, data: bytes) -> None:
        digest = await asyncio.to_thread(_md5, data)
        stored = await retried(
            f"store {self._key}",
            lambda: self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=data, ContentMD5=_content_md5(digest)
            ),
        )
        self._size = len(data)
        await self._verify(digest.hex(), stored["ETag"])

    async def _complete(self) -> None:
        await asyncio.gather(*self._sending)
        upload_id = self._upload_id
        assert upload_id is not None
        parts = sorted(self._parts, key=lambda part: part.number)
        await retried(
            f"complete the upload of {self._key}",
            lambda: self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": part.number, "ETag": part.etag} for part in parts]
                },
            ),
        )
        self._upload_id = None  # completed: nothing left to abort
        # A multipart object's ETag is the MD5 of its parts' MD5s, and their count.
        combined = _md5(b"".join(part.md5 for part in parts)).hex()
        head = await retried(
            f"check {self._key}",
            lambda: self._client.head_object(Bucket=self._bucket, Key=self._key),
        )
        await self._verify(f"{combined}-{len(parts)}", head["ETag"], head["ContentLength"])

    async def _verify(self, expected_etag: str, etag: str, size: int | None = None) -> None:
        # Stores that encrypt with their own keys (SSE-KMS) give other ETags: not supported.
        if _unquoted(etag) != expected_etag or (size is not None and size != self._size):
            await self._remove()
            raise OSError(
                f"the object store kept {self._key} with another checksum or size than was sent"
                f" (ETag {etag}, {size} bytes; expected {expected_etag}, {self._size} bytes)"
            )

    async def _remove(self) -> None:
        await retried(
            f"remove {self._key}",
            lambda: self._client.delete_object(Bucket=self._bucket, Key=self._key),
        )

    async def _abort(self) -> None:
        for sending in self._sending:
            sending.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        upload_id = self._upload_id
        if upload_id is None:
            return
        try:
            await retried(
                f"abort the upload of {self._key}",
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload_id
                ),
            )
        except OSError as exc:
            log.error("%s; the janitor will abort it later", exc)
