"""Smoke test of ``make run EMBEDDED=1``: start the stack, export xlsx and csv over HTTP, stop it.

Run from the repository with its virtualenv: ``.venv/bin/python .ci/smoke.py``. The stack keeps
its state in the clone's ``var/dev``; the API gets a free port and a temporary storage directory.
Ends with a ``smoke: N passed, N failed`` line and a non-zero exit status on any failure.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import openpyxl

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / "var" / "dev"
HOST = "127.0.0.1"
HEADER = ["ID", "用户名", "昵称", "邮箱", "手机号", "状态", "角色", "创建时间", "最后登录时间"]
MIN_ROWS = 10_000  # what `exporter dev` seeds by default

START_TIMEOUT_S = 120.0
EXPORT_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
LEFTOVER_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.5
HTTP_TIMEOUT_S = 30.0

# No proxy: a CI's HTTP_PROXY must not see requests to our own loopback port.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

T = TypeVar("T")


class SmokeFailure(Exception):
    """A check did not hold; the message says what was expected and what was seen."""


class DevStack:
    """``make run EMBEDDED=1`` in its own process group, its output kept for a failure report."""

    def __init__(self, port: int, storage_dir: Path) -> None:
        self.port = port
        env = dict(os.environ)
        env.update(
            EXPORTER_HOST=HOST,
            EXPORTER_PORT=str(port),
            EXPORTER_STORAGE_URL=storage_dir.resolve().as_uri(),
            PYTHONUNBUFFERED="1",
        )
        self.process = subprocess.Popen(
            ["make", "run", "EMBEDDED=1"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def wait_ready(self) -> tuple[str, str]:
        """The base URL and admin token from the banner, once /healthz answers."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            output = self.output
            url = re.search(r"^\s+url:\s+(\S+)", output, re.MULTILINE)
            token = re.search(r"^\s+token:\s+(\S+)", output, re.MULTILINE)
            if url and token:
                break
            if self.process.poll() is not None:
                raise SmokeFailure(f"make run exited with {self.process.returncode} before ready")
            if time.monotonic() > deadline:
                raise SmokeFailure(f"no banner with url and token within {START_TIMEOUT_S} s")
            time.sleep(POLL_INTERVAL_S)
        base_url = url[1]
        if base_url != f"http://{HOST}:{self.port}":
            raise SmokeFailure(f"banner shows {base_url}, expected port {self.port}")
        for service in ("postgres", "redis"):
            if f"{service}: embedded" not in output:
                raise SmokeFailure(f"EMBEDDED=1 did not start an embedded {service}")
        with HTTP.open(f"{base_url}/healthz", timeout=HTTP_TIMEOUT_S) as response:
            if response.status != 200:
                raise SmokeFailure(f"/healthz answered {response.status}")
        return base_url, token[1]

    def stop(self) -> None:
        """SIGINT to the group (as Ctrl-C would); then nothing the stack started may remain."""
        started = _stack_processes(self.process.pid, self.port)
        was_running = self.process.poll() is None
        if was_running:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _kill(started)
                raise SmokeFailure(f"make run still up {STOP_TIMEOUT_S} s after SIGINT") from None
        self._reader.join(timeout=5)
        leftovers = _wait_gone(started | _stack_processes(self.process.pid, self.port))
        if leftovers:
            _kill(leftovers)
            described = "; ".join(f"{pid}: {_cmdline(pid)}" for pid, _ in sorted(leftovers))
            raise SmokeFailure(f"processes left running after the stack stopped: {described}")
        if was_running and "dev stack stopped" not in self.output:
            raise SmokeFailure("exporter dev did not report a clean stop")

    def kill(self) -> None:
        """Last resort when a check failed before the orderly stop could run."""
        if self.process.poll() is None:
            _kill(_stack_processes(self.process.pid, self.port))
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


Process = tuple[int, int]
"""A pid and its start time, so a reused pid is not taken for the process we saw."""


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """Parent pid, start time and state of a process, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may hold spaces; the fields after it do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _all_pids() -> Iterator[int]:
    return (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())


def _stack_processes(root_pid: int, port: int) -> set[Process]:
    """Descendants of ``root_pid``, and processes naming the state dir or the port.

    The second kind finds what was detached from the tree: pg_ctl starts the postmaster in
    its own session, so its parent is init.
    """
    stats = {pid: stat for pid in _all_pids() if (stat := _proc_stat(pid)) is not None}
    mentions = re.compile(rf"{re.escape(str(STATE_DIR))}|(?<!\d){port}(?!\d)")
    found = {
        pid for pid in stats if pid != os.getpid() and mentions.search(_cmdline(pid)) is not None
    }
    frontier = [root_pid, *found]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in stats.items() if ppid == parent]
        found.update(children)
        frontier.extend(children)
    found.discard(root_pid)
    return {(pid, stats[pid][1]) for pid in found}


def _alive(process: Process) -> bool:
    stat = _proc_stat(process[0])
    return stat is not None and stat[1] == process[1] and stat[2] != "Z"


def _wait_gone(processes: set[Process]) -> set[Process]:
    deadline = time.monotonic() + LEFTOVER_TIMEOUT_S
    while (alive := {process for process in processes if _alive(process)}) and (
        time.monotonic() < deadline
    ):
        time.sleep(POLL_INTERVAL_S)
    return alive


def _kill(processes: set[Process]) -> None:
    for process in processes:
        if _alive(process):
            try:
                os.kill(process[0], signal.SIGKILL)
            except ProcessLookupError:
                pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _request(
    method: str, url: str, token: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with HTTP.open(request, timeout=HTTP_TIMEOUT_S) as response:
            answer: dict[str, Any] = json.load(response)
            return answer
    except urllib.error.HTTPError as exc:
        raise SmokeFailure(f"{method} {url}: {exc.code} {exc.read().decode()}") from None


def _create_export(base_url: str, token: str, file_format: str) -> str:
    body = {"type": "account", "format": file_format, "params": {}}
    task = _request("POST", f"{base_url}/api/export-tasks", token, body)
    task_id: str = task["id"]
    return task_id


def _readme_token(base_url: str) -> None:
    """The README's `exporter token admin`, run beside the stack with nothing set, signs in."""
    env = {k: v for k, v in os.environ.items() if k not in ("EXPORTER_SECRET", "DATABASE_URL")}
    made = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "exporter"), "token", "admin"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HTTP_TIMEOUT_S,
    )
    if made.returncode != 0:
        raise SmokeFailure(f"exporter token admin: {made.stdout}{made.stderr}")
    _request("GET", f"{base_url}/api/export-tasks", made.stdout.strip())


def _wait_completed(base_url: str, token: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    while True:
        task = _request("GET", f"{base_url}/api/export-tasks/{task_id}", token)
        if task["status"] == "completed":
            return task
        if task["status"] not in ("pending", "running"):
            raise SmokeFailure(f"task {task_id} ended {task['status']}: {task['error']}")
        if time.monotonic() > deadline:
            raise SmokeFailure(f"task {task_id} still {task['status']} after {EXPORT_TIMEOUT_S} s")
        time.sleep(POLL_INTERVAL_S)


def _download(base_url: str, token: str, task: dict[str, Any], dest: Path) -> Path:
    request = urllib.request.Request(
        base_url + task["download_url"], headers={"Authorization": f"Bearer {token}"}
    )
    with HTTP.open(request, timeout=HTTP_TIMEOUT_S) as response:
        dest.write_bytes(response.read())
    return dest


def _csv_data_rows(path: Path) -> int:
    data = path.read_bytes()
    if not data.startswith(codecs.BOM_UTF8):
        raise SmokeFailure("csv does not start with a UTF-8 BOM")
    rows = list(csv.reader(io.StringIO(data[len(codecs.BOM_UTF8) :].decode(), newline="")))
    if not rows or rows[0] != HEADER:
        raise SmokeFailure(f"csv header is {rows[:1]}, expected {HEADER}")
    return len(rows) - 1


def _xlsx_data_rows(path: Path) -> int:
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        data_rows = 0
        for sheet in workbook.worksheets:
            rows = sheet.iter_rows(values_only=True)
            header = list(next(rows, ()))
            if header != HEADER:
                raise SmokeFailure(f"xlsx sheet {sheet.title!r} header is {header}")
            data_rows += sum(1 for row in rows if any(cell is not None for cell in row))
        return data_rows
    finally:
        workbook.close()


def _check_export(
    base_url: str, token: str, task_id: str, file_format: str, work_dir: Path
) -> Path:
    task = _wait_completed(base_url, token, task_id)
    path = _download(base_url, token, task, work_dir / f"{task_id}.{file_format}")
    data_rows = _csv_data_rows(path) if file_format == "csv" else _xlsx_data_rows(path)
    if data_rows != task["row_count"]:
        raise SmokeFailure(f"{data_rows} data rows in the file, the task says {task['row_count']}")
    if data_rows < MIN_ROWS:
        raise SmokeFailure(f"only {data_rows} rows exported, expected at least {MIN_ROWS}")
    print(f"smoke: {file_format} export {task_id}: {data_rows} rows, {path.stat().st_size} bytes")
    return path


def _check_import(base_url: str, token: str, exported: Path) -> None:
    """The export, uploaded unchanged for a validating import, finds every row unchanged."""
    boundary = f"smoke-{os.getpid()}"
    form = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("type", "account"), ("mode", "validate"))
    ]
    body = (
        "".join(form).encode()
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{exported.name}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
        + exported.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base_url}/api/import-tasks",
        method="POST",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    try:
        with HTTP.open(request, timeout=HTTP_TIMEOUT_S) as response:
            task: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        raise SmokeFailure(f"POST /api/import-tasks: {exc.code} {exc.read().decode()}") from None
    url = f"{base_url}/api/import-tasks/{task['id']}"
    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    while task["status"] in ("pending", "running"):
        if time.monotonic() > deadline:
            raise SmokeFailure(f"import {task['id']} still {task['status']}")
        time.sleep(POLL_INTERVAL_S)
        task = _request("GET", url, token)
    counts = task["counts"] or {}
    if task["status"] != "completed" or counts.get("unchanged") != _csv_data_rows(exported):
        raise SmokeFailure(f"import ended {task['status']} with {counts}: {task['error']}")
    print(f"smoke: csv import {task['id']}: {counts}")


class Checks:
    """Named checks run in order; a failure is reported and counted, not raised."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def run(self, name: str, check: Callable[[], T]) -> T | None:
        """The check's result, or None when it failed."""
        started = time.monotonic()
        try:
            result = check()
        except Exception as exc:
            self.failed += 1
            print(f"smoke: FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
            return None
        self.passed += 1
        print(f"smoke: ok   {name} ({time.monotonic() - started:.1f} s)", flush=True)
        return result


def main() -> int:
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="exporter-smoke-") as tmp:
        work_dir = Path(tmp)
        stack = DevStack(_free_port(), work_dir / "exports")
        try:
            ready = checks.run("make run EMBEDDED=1 starts", stack.wait_ready)
            if ready is not None:
                base_url, token = ready
                checks.run("the README's exporter token works", partial(_readme_token, base_url))
                task_ids: dict[str, str] = {}
                for file_format in ("xlsx", "csv"):
                    create = partial(_create_export, base_url, token, file_format)
                    task_id = checks.run(f"create {file_format} export", create)
                    if task_id is not None:
                        task_ids[file_format] = task_id
                exported: dict[str, Path | None] = {}
                for file_format, task_id in task_ids.items():
                    verify = partial(_check_export, base_url, token, task_id, file_format, work_dir)
                    exported[file_format] = checks.run(
                        f"{file_format} export completes and reads back", verify
                    )
                if (csv_file := exported.get("csv")) is not None:
                    imported = partial(_check_import, base_url, token, csv_file)
                    checks.run("the csv export imports back unchanged", imported)
            checks.run("SIGINT stops everything it started", stack.stop)
        finally:
            stack.kill()
        if checks.failed:
            print(f"----- output of make run -----\n{stack.output}\n-----", flush=True)
    print(f"smoke: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
