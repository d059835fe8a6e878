"""A PostgreSQL primary and its streaming replica, started for the tests from the server
binaries installed on the machine (the Debian package's ``bin`` directory, not on PATH).

The servers refuse to run as root, so as root every command runs as the ``postgres`` system
user, in a directory it owns. Both listen on loopback only, on free ports, with trust
authentication (replication too); nothing is fsynced, as nothing here needs to survive a crash.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

LOCALHOST = "127.0.0.1"
SERVER_USER = "postgres"
START_TIMEOUT_S = 30


def server_bin_dir() -> Path:
    """The ``bin`` directory of the newest PostgreSQL installed from the distribution."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class StreamingReplica:
    """A running primary and its hot standby; ``*_url`` name a database on either."""

    root: Path
    primary_port: int
    replica_port: int

    def primary_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{LOCALHOST}:{self.primary_port}/{database}"

    def replica_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{LOCALHOST}:{self.replica_port}/{database}"

    async def caught_up(self, timeout_s: float = 10.0) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        primary = await asyncpg.connect(self.primary_url())
        replica = await asyncpg.connect(self.replica_url())
        try:
            target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
            async with asyncio.timeout(timeout_s):
                while await replica.fetchval("SELECT pg_last_wal_replay_lsn()") < target:
                    await asyncio.sleep(0.02)
        finally:
            await primary.close()
            await replica.close()


def _as_server_user(program: Path, *args: str) -> list[str]:
    command = [str(program), *args]
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


def _run(program: Path, *args: str) -> None:
    command = _as_server_user(program, *args)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{program.name} failed ({done.returncode}): {done.stderr[-2000:]}")


def _configure(data_dir: Path, port: int, socket_dir: Path) -> None:
    with (data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            f"\nlisten_addresses = '{LOCALHOST}'\nport = {port}\n"
            f"unix_socket_directories = '{socket_dir}'\n"
            "wal_level = replica\nhot_standby = on\nmax_wal_senders = 4\n"
            "fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\n"
        )


@contextmanager
def running_streaming_replica() -> Iterator[StreamingReplica]:
    """Start a primary, clone it with ``pg_basebackup -R`` and start the clone as its hot
    standby; both are stopped (immediately: nothing to keep) and removed at the end."""
    bin_dir = server_bin_dir()
    # Not pytest's tmp_path: its parents are private to root, and the servers run as postgres.
    root = Path(tempfile.mkdtemp(prefix="exporter-replica-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    primary_dir, replica_dir = root / "primary", root / "replica"
    pair = StreamingReplica(root, free_port(), free_port())
    started: list[Path] = []
    try:
        _run(
            bin_dir / "initdb",
            *("-D", str(primary_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            *("--no-sync", "--no-instructions"),
        )
        _configure(primary_dir, pair.primary_port, root)
        _start(bin_dir, primary_dir, started)
        _run(
            bin_dir / "pg_basebackup",
            *("-D", str(replica_dir), "-R", "-X", "stream", "-c", "fast"),
            *("-h", LOCALHOST, "-p", str(pair.primary_port), "-U", "postgres"),
        )
        _configure(replica_dir, pair.replica_port, root)
        _start(bin_dir, replica_dir, started)
        yield pair
    finally:
        for data_dir in reversed(started):
            stop = ("stop", "-D", str(data_dir), "-m", "immediate", "-w")
            subprocess.run(_as_server_user(bin_dir / "pg_ctl", *stop), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _start(bin_dir: Path, data_dir: Path, started: list[Path]) -> None:
    log_file = data_dir.parent / f"{data_dir.name}.log"
    _run(
        bin_dir / "pg_ctl",
        *("start", "-D", str(data_dir), "-w", "-t", str(START_TIMEOUT_S), "-l", str(log_file)),
    )
    started.append(data_dir)
