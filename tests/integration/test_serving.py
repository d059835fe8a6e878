"""`exporter serve` in several processes: one port, every process serving, all gone together."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from settings import Settings
from tests.processes import settings_env, start_exporter
from tests.support import trickle, wait_until

PROCESSES = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = {**os.environ, **settings_env(settings, port=port, api_processes=PROCESSES)}
    process = start_exporter("serve", env, tmp_path / "serve.log")
    parent = psutil.Process(process.pid)
    try:
        yield process, port
    finally:
        family = [parent, *parent.children(recursive=True)] if parent.is_running() else []
        for member in family:
            member.kill()
        process.wait()


def _api_children(pid: int) -> list[psutil.Process]:
    """The spawned API processes (multiprocessing also starts a resource tracker)."""
    return [
        child
        for child in psutil.Process(pid).children()
        if "resource_tracker" not in " ".join(child.cmdline())
    ]


async def _all_listening(members: list[psutil.Process], port: int) -> bool:
    return all(
        any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in m.net_connections())
        for m in members
    )


async def _serving(port: int, pid: int, processes: int = PROCESSES) -> bool:
    if len(_api_children(pid)) != processes - 1:
        return False
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                return response.status == 200
    except aiohttp.ClientError:
        return False


async def _every_process_listening(
    process: subprocess.Popen[bytes], port: int
) -> list[psutil.Process]:
    """The server's processes, parent first, once the API answers and each of them listens."""
    await wait_until(lambda: _serving(port, process.pid), timeout_s=60, what="the API")
    members = [psutil.Process(process.pid), *_api_children(process.pid)]
    await wait_until(lambda: _all_listening(members, port), what="every process listening")
    return members


async def test_every_api_process_listens_on_the_one_port(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = server
    members = await _every_process_listening(process, port)
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(20):
            # A new connection each time: the kernel picks a process per connection.
            async with session.get(
                f"http://127.0.0.1:{port}/readyz", headers={"Connection": "close"}
            ) as response:
                statuses.append(response.status)

    assert len(members) == PROCESSES
    assert statuses == [200] * 20


async def test_the_server_says_once_where_it_listens(
    server: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    process, port = server
    await _every_process_listening(process, port)
    said = f"listening on http://127.0.0.1:{port}"

    async def logged() -> bool:
        return said in (tmp_path / "serve.log").read_text()

    await wait_until(logged, what="the listening line")
    assert (tmp_path / "serve.log").read_text().count(said) == 1


async def test_each_answer_is_logged_with_its_status_size_and_seconds_taken(
    server: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    process, port = server
    await wait_until(lambda: _serving(port, process.pid), timeout_s=60, what="the API")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"http://127.0.0.1:{port}/api/export-tasks", headers={"User-Agent": "probe/1"}
        ) as response:
            size = len(await response.read())
    line = re.compile(
        rf'aiohttp\.access: 127\.0\.0\.1 "GET /api/export-tasks HTTP/1\.1" 401 {size} '
        r'(\d+\.\d+) "probe/1"$',
        re.MULTILINE,
    )

    async def logged() -> re.Match[str] | None:
        return line.search((tmp_path / "serve.log").read_text())

    match = await wait_until(logged, what="the access log line")
    assert size > 0
    assert 0 < float(match[1]) < 10


async def test_an_unparsable_request_is_answered_in_json_and_logged_as_a_warning(
    server: tuple[subprocess.Popen[bytes], int], tmp_path: Path
) -> None:
    process, port = server
    await wait_until(lambda: _serving(port, process.pid), timeout_s=60, what="the API")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Note: " + b"a" * 9_000 + b"\r\n\r\n")
    answer = await reader.read()
    writer.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"]["code"] == "bad_request"

    async def logged() -> str | None:
        log = (tmp_path / "serve.log").read_text()
        return log if "unreadable request from 127.0.0.1" in log else None

    log = await wait_until(logged, what="the warning")
    assert "Traceback" not in log
    assert " ERROR " not in log


async def test_stopping_the_server_stops_every_api_process(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = server
    await wait_until(lambda: _serving(port, process.pid), timeout_s=60, what="the API")
    children = _api_children(process.pid)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert len(gone) == PROCESSES - 1


async def test_a_stop_signal_to_every_process_at_once_is_a_clean_stop(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = server
    _, *children = await _every_process_listening(process, port)

    # As a process manager stopping the whole group does: the children may end first.
    for member in children:
        member.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []


async def test_an_api_process_that_dies_takes_the_server_down(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = server
    await wait_until(lambda: _serving(port, process.pid), timeout_s=60, what="the API")
    first, *others = _api_children(process.pid)
    started = time.monotonic()

    first.kill()

    assert process.wait(timeout=30) == 1
    _, alive = psutil.wait_procs(others, timeout=10)
    assert alive == []
    assert time.monotonic() - started < 15


async def test_exporter_serve_closes_a_request_head_that_trickles_in_past_the_header_timeout(
    settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    env = {**os.environ, **settings_env(settings, port=port, header_timeout_s=1.0)}
    process = start_exporter("serve", env, tmp_path / "serve.log")

    try:
        await wait_until(lambda: _serving(port, process.pid, 1), timeout_s=60, what="the API")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        trickling = asyncio.create_task(trickle(writer, head, 0.05))
        try:
            async with asyncio.timeout(10):
                assert await reader.read() == b""  # closed without an answer
        finally:
            trickling.cancel()
            writer.close()
        elapsed_s = time.monotonic() - started
    finally:
        process.kill()
        process.wait()

    assert 1.0 <= elapsed_s < 5.0  # the run_app default kept it for 75 s
