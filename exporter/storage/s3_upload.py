"""One local file into one S3 object, streamed: parts go up while the file still grows, a few
at a time, each with its MD5 for the store to check; whole or not at all.

A part is read from the file while it is sent, never held whole, and a process has at most
``PARTS_IN_FLIGHT`` parts in flight, shared by all its uploads. A file shorter than one part
goes up in one request, read as it is sent too, in one of the same slots. The object is
checked once complete (its size, and its ETag against the parts' MD5s); any failure or
cancellation aborts the multipart upload, or removes the object once it may exist, so the store
keeps neither an object nor an unfinished upload.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from exporter.storage.s3_calls import error_code, retried

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import PutObjectOutputTypeDef, UploadPartOutputTypeDef

log = logging.getLogger("exporter.storage")

# Parts are read from the file as they are sent (FileSlice), so their size costs no memory: a
# 113 MB upload to SeaweedFS took a process from 72 MB to 80-82 MB, where parts held as bytes
# (ours, botocore's, the socket buffer's) took it to 150-158 MB with 3 of 8 MiB in flight, in
# about the same time on a busy 2-core machine (1.7-4.0 s either way).
PART_BYTES = 8 * 1024**2
PARTS_IN_FLIGHT = 3


def part_slots() -> asyncio.Semaphore:
    """The slots of one process's parts in flight, shared by all its uploads."""
    return asyncio.Semaphore(PARTS_IN_FLIGHT)


READ_BYTES = 1024 * 1024
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


def _no_such_upload(exc: OSError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ClientError) and error_code(cause) == "NoSuchUpload"


class FileSlice(io.RawIOBase):
    """``size`` bytes of an open file from ``start``, read from disk as they are sent: a part
    in flight holds no copy of itself. Seekable, so that botocore can sign it and send it."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._start = start
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = min(max(base + offset, 0), self._size)
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = os.pread(
            self._fd, min(len(view), self._size - self._position), self._start + self._position
        )
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def __len__(self) -> int:
        return self._size

    def md5(self) -> bytes:
        """The slice's MD5, read from the file (in pieces: a part is never held whole)."""
        digest = hashlib.md5(usedforsecurity=False)
        end = self._start + self._size
        for offset in range(self._start, end, READ_BYTES):
            digest.update(os.pread(self._fd, min(READ_BYTES, end - offset), offset))
        return digest.digest()


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
        self._written_at = math.inf
        # Once the object may exist (its PUT or completion sent, even if the answer was lost),
        # a failure or cancellation must remove it.
        self._may_exist = False

    async def from_file(self, source: Path, written: asyncio.Future[None]) -> int:
        """Send ``source`` as it grows, until ``written`` is done; the object's size in bytes.
        ``written``'s error (or a cancellation) aborts the upload and is raised."""
        with source.open("rb") as file:
            fd = file.fileno()
            try:
                await self._send_while_growing(fd, written)
                rest = os.fstat(fd).st_size - self._size
                if self._upload_id is None:
                    await self._put_whole(fd, rest)
                else:
                    if rest:
                        await self._start_part(fd, rest)
                    await self._complete()
            except BaseException:
                # Before the file closes: the parts still in flight read it.
                await asyncio.shield(self._abort())
                raise
        # What a csv export waits for after its last row: the tail of its upload.
        log.info(
            "stored %s: %d bytes in %d part(s), %.2f s after it was written",
            self._key,
            self._size,
            max(self._started, 1),
            time.monotonic() - self._written_at,
        )
        return self._size

    async def _send_while_growing(self, fd: int, written: asyncio.Future[None]) -> None:
        while True:
            self._raise_failed_part()
            # Seen before the file's size: once the writer is done, the size is final.
            finished = written.done()
            if finished:
                written.result()
                self._written_at = min(self._written_at, time.monotonic())
            if os.fstat(fd).st_size - self._size >= PART_BYTES:
                await self._start_part(fd, PART_BYTES)
            elif finished:
                return
            else:
                await asyncio.wait({written}, timeout=GROWTH_POLL_S)

    async def _start_part(self, fd: int, size: int) -> None:
        """Send the next ``size`` bytes as the next part in the background, once one of the
        slots is free."""
        if self._upload_id is None:
            created = await retried(
                f"begin the upload of {self._key}",
                lambda: self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key),
            )
            self._upload_id = created["UploadId"]
        await self._slots.acquire()
        self._started += 1
        start, self._size = self._size, self._size + size
        sending = asyncio.create_task(
            self._send_part(self._upload_id, self._started, FileSlice(fd, start, size))
        )
        sending.add_done_callback(lambda _: self._slots.release())
        self._sending.add(sending)

    def _raise_failed_part(self) -> None:
        for sending in self._sending:
            if sending.done() and not sending.cancelled() and sending.exception() is not None:
                sending.result()

    async def _send_part(self, upload_id: str, number: int, part: FileSlice) -> None:
        digest = await asyncio.to_thread(part.md5)

        async def send() -> UploadPartOutputTypeDef:
            part.seek(0)  # a try after a failed one sends the part again from its start
            return await self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                PartNumber=number,
                # botocore takes any seekable binary file; typeshed's IO is a class it is not.
                Body=cast("IO[bytes]", part),
                ContentMD5=_content_md5(digest),
            )

        sent = await retried(f"store part {number} of {self._key}", send)
        self._parts.append(_Part(number, sent["ETag"], digest))

    async def _put_whole(self, fd: int, size: int) -> None:
        # Less than a part, and sent like one: read as it goes, in one of the slots.
        whole = FileSlice(fd, 0, size)
        async with self._slots:
            digest = await asyncio.to_thread(whole.md5)

            async def put() -> PutObjectOutputTypeDef:
                whole.seek(0)  # a try after a failed one sends it again from its start
                return await self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=cast("IO[bytes]", whole),
                    ContentMD5=_content_md5(digest),
                )

            self._may_exist = True
            stored = await retried(f"store {self._key}", put)
        self._size = size
        await self._verify(digest.hex(), stored["ETag"])

    async def _complete(self) -> None:
        await asyncio.gather(*self._sending)
        upload_id = self._upload_id
        assert upload_id is not None
        parts = sorted(self._parts, key=lambda part: part.number)
        tries = 0

        async def complete() -> object:
            nonlocal tries
            tries += 1
            return await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": part.number, "ETag": part.etag} for part in parts]
                },
            )

        self._may_exist = True
        try:
            await retried(f"complete the upload of {self._key}", complete)
        except OSError as exc:
            # A try whose answer was lost may have completed it: the next finds no upload, and
            # the object's ETag and size below tell whether it is this one.
            if tries == 1 or not _no_such_upload(exc):
                raise
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
            raise OSError(
                f"the object store kept {self._key} with another checksum or size than was sent"
                f" (ETag {etag}, {size} bytes; expected {expected_etag}, {self._size} bytes)"
            )

    async def _abort(self) -> None:
        for sending in self._sending:
            sending.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        if self._may_exist:
            await self._remove()
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

    async def _remove(self) -> None:
        """Remove the completed object (whole or not at all); a failure is logged, and the
        janitor removes it later as no task row names it."""
        try:
            await retried(
                f"remove {self._key}",
                lambda: self._client.delete_object(Bucket=self._bucket, Key=self._key),
            )
        except OSError as exc:
            log.error("%s; the janitor will remove it later", exc)
